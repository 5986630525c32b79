"""The summary table of benchmarks/gpu.sh: each step's status, time, figures, and the targets it is held to.

    python benchmarks/gpu_summary.py LOG_DIR DEVICE "name|status|seconds" ...

Reads LOG_DIR/<name>.log of each step (what its benchmark printed). Targets
are checked only on a GPU run; a CPU smoke run shows them as not applicable.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

NUMBER = r"([\d,]+(?:\.\d+)?)"


def number(text: str) -> float:
    return float(text.replace(",", ""))


def figures(log: str) -> list[str]:
    """The lines a benchmark prints as results (comments start with '#')."""
    return [line.strip() for line in log.splitlines() if line.strip() and not line.startswith("#")
            and not line.startswith(("Traceback", "  ")) and "Warning" not in line]


def targets(name: str, log: str) -> list[tuple[str, float | None, float, str]]:
    """(what, measured or None, limit, 'min'|'max') for the figures a step has a target for."""
    out: list[tuple[str, float | None, float, str]] = []
    if name == "pipeline":
        m = re.search(rf"run_samples\s+best {NUMBER}", log)
        out.append(("labelled samples/s (run_samples, best)", number(m.group(1)) if m else None, 250_000, "min"))
    if name == "build":
        m = re.search(rf"\(fit while sampling\): {NUMBER} s end to end, peak host memory {NUMBER} MiB", log)
        out.append(("N = 1M end to end, s", number(m.group(1)) if m else None, 15, "max"))
        out.append(("peak host memory, MiB", number(m.group(2)) if m else None, 2048, "max"))
    return out


def main() -> None:
    if len(sys.argv) < 3:
        print(__doc__.strip().splitlines()[0])
        print("(run by benchmarks/gpu.sh; nothing to summarise without its logs)")
        return
    logs, device, steps = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    on_gpu = device.startswith("cuda")
    print()
    print(f"{'step':<10} {'status':<56} {'time':>6}  figures")
    print("-" * 110)
    checks = []
    for step in steps:
        name, status, seconds = step.split("|")
        path = logs / f"{name}.log"
        log = path.read_text(errors="replace") if path.exists() else ""
        lines = figures(log) if status == "ok" else []
        print(f"{name:<10} {status:<56} {seconds + ' s':>6}  {lines[0] if lines else ''}")
        for line in lines[1:6]:
            print(f"{'':<10} {'':<56} {'':>6}  {line}")
        if status == "ok":
            checks += [(name, *t) for t in targets(name, log)]
    if checks:
        print()
        print(f"{'target':<48} {'measured':>12} {'limit':>12}  verdict")
        print("-" * 90)
        for name, what, value, limit, kind in checks:
            if value is None:
                verdict = "not found in the log"
            elif not on_gpu:
                verdict = "n/a (CPU smoke run)"
            else:
                verdict = "met" if (value >= limit if kind == "min" else value <= limit) else "NOT met"
            shown = "-" if value is None else f"{value:,.1f}"
            sign = ">=" if kind == "min" else "<="
            print(f"{what:<48} {shown:>12} {sign} {limit:>9,}  {verdict}")


if __name__ == "__main__":
    main()
