"""Render latency of the web app: server-side time per frame, and round trips for 1, 8 and 32 concurrent clients.

    python benchmarks/web_latency.py [--seconds 8] [--size 512] [--device cpu] [--clients 1,8,32]

The server (default generator, shipped knob set, default extractors) runs in
its own process on a free loopback port, as `tlgan serve` runs it. Each
client imitates a slider drag: one keep-alive connection sending render
requests back to back, each a new value of one knob under a lock, for its
own face; every reply is checked (status 200, a PNG). Clients run in threads
of this process, so on a 2-core machine they compete with the server for CPU:
the figures are what one machine serving itself sees.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))
from common import served  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def load_model(device: str):
    """Default generator and knob set; the default extractors when they load."""
    from tlgan.axes.defaults import (
        DEFAULT_EXTRACTORS,
        DEFAULT_GENERATOR,
        load_default_axes,
    )
    from tlgan.models.extractors import load_extractor
    from tlgan.models.generators import load_generator

    generator = load_generator(DEFAULT_GENERATOR, device)
    return generator, load_default_axes(), load_extractor(DEFAULT_EXTRACTORS, device)


def serve_forever(port: int, device: str) -> None:
    from tlgan.apps.web import create_app, serve
    from tlgan.sampling.pipeline import set_cpu_threads

    set_cpu_threads()
    serve(create_app(*load_model(device)), host="127.0.0.1", port=port)


def one_frame_times(device: str, size: int, frames: int = 300) -> list[float]:
    """Server-side work for one frame, in-process and sequential: replay + render + scale + encode (ms)."""
    from tlgan.apps.web.frames import encode_frame
    from tlgan.apps.web.renderer import BatchRenderer
    from tlgan.apps.web.state import Replayer
    from tlgan.editing.editor import Edit
    from tlgan.sampling.pipeline import set_cpu_threads

    set_cpu_threads()
    generator, axes, _ = load_model(device)
    replayer, renderer = Replayer(generator, axes), BatchRenderer(generator)
    rng = random.Random(0)
    prefix = (Edit("set", axes.names[0], 1.0), Edit("step", axes.names[1], -0.4, (axes.names[0],)))
    times = []
    try:
        for i in range(frames + 20):
            edits = [*prefix, Edit("set", axes.names[2], rng.uniform(-3, 3), (axes.names[0],))]
            start = time.perf_counter()
            editor = replayer.editor(7, edits, [axes.names[0]])
            pixels = renderer.render(editor.latent()[None]).pixels[0]
            encode_frame(pixels, size)
            if i >= 20:  # warm-up
                times.append((time.perf_counter() - start) * 1000)
    finally:
        renderer.close()
    return times


def run_clients(url: str, clients: int, seconds: float, size: int, knobs: list[str]) -> dict:
    import httpx

    latencies: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)
    stop_at = [0.0]

    def client(i: int) -> None:
        rng = random.Random(i)
        knob, locked = knobs[i % len(knobs)], knobs[(i + 1) % len(knobs)]
        with httpx.Client(base_url=url, timeout=30) as http:
            http.get("/api/model")
            barrier.wait()
            if i == 0:
                stop_at[0] = time.perf_counter() + seconds
            while not stop_at[0]:
                time.sleep(0.0005)
            while time.perf_counter() < stop_at[0]:
                body = {"seed": 1000 + i, "locks": [locked], "size": size,
                        "edits": [{"op": "set", "knob": knob, "value": round(rng.uniform(-3, 3), 2), "locks": [locked]}]}
                start = time.perf_counter()
                try:
                    res = http.post("/api/render", json=body)
                    elapsed = (time.perf_counter() - start) * 1000
                    ok = res.status_code == 200 and res.content[:8] == b"\x89PNG\r\n\x1a\n"
                    with lock:
                        if ok:
                            latencies.append(elapsed)
                            server_ms.append(float(res.headers["server-timing"].split("dur=")[1]))
                        else:
                            errors.append(f"{res.status_code} {res.text[:100]}")
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "clients": clients, "requests": len(latencies) + len(errors), "errors": len(errors),
        "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95), "max_ms": max(latencies),
        "frames_per_s": len(latencies) / seconds, "server_p95_ms": percentile(server_ms, 95),
        "first_error": errors[0] if errors else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="load duration per concurrency level")
    parser.add_argument("--size", type=int, default=512, help="frame size in px (the page asks for 512)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve_forever(args.serve, args.device)
        return

    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs (load average {load} before the run), torch {torch.__version__}, "
          f"device {args.device}, frames {args.size} px PNG")
    frame = one_frame_times(args.device, args.size)
    print(f"one frame, server side (replay + render + scale + PNG), {len(frame)} frames: "
          f"p50 {percentile(frame, 50):.2f} ms, p95 {percentile(frame, 95):.2f} ms")

    results = {"frame_p50_ms": percentile(frame, 50), "frame_p95_ms": percentile(frame, 95), "levels": []}
    with served(args.device, timeout=60) as (url, info):
        knobs = [k["name"] for k in info["knobs"]]
        run_clients(url, 1, 1.0, args.size, knobs)  # warm-up
        print(f"\n{'clients':>7} {'requests':>9} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
              f"{'frames/s':>9} {'server p95':>11}")
        for clients in [int(c) for c in args.clients.split(",")]:
            r = run_clients(url, clients, args.seconds, args.size, knobs)
            results["levels"].append(r)
            print(f"{r['clients']:>7} {r['requests']:>9} {r['errors']:>6} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
                  f"{r['max_ms']:>8.1f} {r['frames_per_s']:>9.1f} {r['server_p95_ms']:>9.1f}ms")
            if r["first_error"]:
                print(f"        first error: {r['first_error']}")
    print(f"load average after the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
