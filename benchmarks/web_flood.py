"""One client floods the web server: does GET /api/model keep answering, and does every heavy request end?

    python benchmarks/web_flood.py [--clients 40] [--locks 14] [--edits 500] [--size 1024]

The server (default generator, shipped knob set, default extractors) runs in
its own process on a free loopback port, as `tlgan serve` runs it. `--clients`
threads each send one legal heavy render at once: `--edits` 'step' edits
(alternating knobs, so nothing collapses) under `--locks` locks, at `--size`
px, each for its own face (no cache hits). Meanwhile a prober asks
GET /api/model every 0.2 s. Printed: the probe's latency (p50, p95, max;
target max ≤ 2 s), and how each heavy request ended (served 200, refused
422 by the edits × locks cap or 503 by the queue limit) with the slowest
(target: every one ends within 120 s). The issue's flood (500 edits under 14
locks) is over the cap, so it is also run with as many locks as the cap
allows (`--locks` 6), which the server must actually serve.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_latency import percentile  # noqa: E402
from common import served  # noqa: E402


def flood(url: str, knobs: list[str], clients: int, n_locks: int, n_edits: int, size: int) -> dict:
    import httpx

    locks = knobs[-n_locks:] if n_locks else []
    movable = [k for k in knobs if k not in locks]
    results: list[tuple[int, float]] = []
    probes: list[float] = []
    done = threading.Event()
    barrier = threading.Barrier(clients + 1)

    def heavy(i: int) -> None:
        edits = [{"op": "step", "knob": movable[j % 2], "value": 0.01 if j % 4 < 2 else -0.01, "locks": locks}
                 for j in range(n_edits)]
        body = {"seed": 5000 + i, "edits": edits, "locks": locks, "size": size}
        with httpx.Client(base_url=url, timeout=300) as http:
            barrier.wait()
            start = time.perf_counter()
            try:
                code = http.post("/api/render", json=body).status_code
            except httpx.HTTPError:
                code = -1
            results.append((code, time.perf_counter() - start))

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            barrier.wait()
            while not done.is_set():
                start = time.perf_counter()
                http.get("/api/model").raise_for_status()
                probes.append(time.perf_counter() - start)
                time.sleep(0.2)

    threads = [threading.Thread(target=heavy, args=(i,)) for i in range(clients)]
    prober = threading.Thread(target=probe)
    start = time.perf_counter()
    for t in [*threads, prober]:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done.set()
    prober.join()
    codes: dict[int, int] = {}
    for code, _ in results:
        codes[code] = codes.get(code, 0) + 1
    return {"wall_s": wall, "codes": codes, "slowest_s": max(s for _, s in results),
            "served_p50_s": percentile([s for c, s in results if c == 200] or [0.0], 50),
            "probe_p50_s": percentile(probes, 50), "probe_p95_s": percentile(probes, 95), "probe_max_s": max(probes),
            "probes": len(probes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--edits", type=int, default=500)
    parser.add_argument("--locks", default="14,6", help="comma-separated lock counts, one flood each")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the run")
    with served(args.device) as (url, info):
        knobs = [k["name"] for k in info["knobs"]]
        for n_locks in [int(x) for x in args.locks.split(",")]:
            r = flood(url, knobs, args.clients, n_locks, args.edits, args.size)
            codes = ", ".join(f"{n}× {c}" for c, n in sorted(r["codes"].items()))
            print(f"\n{args.clients} clients × {args.edits} step edits under {n_locks} locks at {args.size} px:")
            print(f"  heavy requests: {codes}; slowest ended after {r['slowest_s']:.1f} s (target ≤ 120 s); "
                  f"served p50 {r['served_p50_s']:.1f} s; flood lasted {r['wall_s']:.1f} s")
            print(f"  GET /api/model during the flood ({r['probes']} probes): p50 {r['probe_p50_s'] * 1000:.0f} ms, "
                  f"p95 {r['probe_p95_s'] * 1000:.0f} ms, max {r['probe_max_s'] * 1000:.0f} ms (target ≤ 2000 ms)")
    print(f"load average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
