"""Input → new image in real Chromium: how long a slider move takes to show its new face.

    python benchmarks/web_latency_browser.py [--moves 200] [--device cpu]

The server (default generator, shipped knob set, default extractors) runs in
its own process, as `tlgan serve` runs it; headless Chromium (Debian's, via
Playwright) opens the page. Each move sets the 'happy' slider to a new value
and fires its input event, as a drag does; the time runs until the new image
has loaded, been decoded and a frame has been painted (the next animation
frame). Moves are sequential, so each figure is one move's own latency.
Printed: p50 and p95 for the frames the page asks for (PNG at the generator's
own size, scaled by the browser) and, for comparison, for 512 px frames
scaled on the server. Target: p95 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_latency import percentile  # noqa: E402
from common import served  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
MOVES_JS = """async (n) => {
  const slider = document.querySelector('.knob[data-knob=happy] input[type=range]');
  const img = document.getElementById('face');
  const times = [], bytes = [];
  for (let i = 0; i < n; i++) {
    const value = (((i * 0.37) % 6) - 3).toFixed(2);
    const loaded = new Promise((done) => img.addEventListener('load', done, { once: true }));
    const t0 = performance.now();
    slider.value = value;
    slider.dispatchEvent(new Event('input', { bubbles: true }));
    await loaded;
    await img.decode();
    await new Promise((done) => requestAnimationFrame(() => done()));
    times.push(performance.now() - t0);
    const entries = performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/api/render'));
    bytes.push(entries.length ? entries[entries.length - 1].encodedBodySize : 0);
    performance.clearResourceTimings();
  }
  slider.dispatchEvent(new Event('change', { bubbles: true }));
  return [times, bytes];
}"""


def measure(browser, url: str, moves: int, frame_size: int | None) -> tuple[list[float], float]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        if frame_size is not None:
            def bigger(route):
                res = route.fetch()
                route.fulfill(response=res, json={**res.json(), "frame_size": frame_size})
            page.route("**/api/model", bigger)
        page.goto(url + "/#seed=7")
        page.wait_for_selector("body[data-ready=true][data-idle=true]", state="attached", timeout=60000)
        page.evaluate(MOVES_JS, 20)  # warm-up
        times, sizes = page.evaluate(MOVES_JS, moves)
        return times, sum(sizes) / max(1, len(sizes))
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the run")
    with served(args.device) as (url, info):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            for label, size in [(f"{info['frame_size']} px PNG (the page's frames)", None), ("512 px PNG", 512)]:
                times, mean_bytes = measure(browser, url, args.moves, size)
                print(f"{label:32s} {len(times)} moves: p50 {percentile(times, 50):.1f} ms, "
                      f"p95 {percentile(times, 95):.1f} ms, max {max(times):.1f} ms; "
                      f"{mean_bytes / 1024:.1f} KiB per frame")
            browser.close()
    print(f"load average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
