"""Do a tuned photo's knobs still do what their names say? Readings of edits in the tuned generator vs generated faces.

The astronaut is inverted (identity term on) and tuned; each edit (a linear step along a knob's axis) is applied
to her latent in the tuned generator and to --faces generated faces in the base generator. Printed: the change
of the edited feature's own reading (the extractor's, as the knob was fitted on), for her and the mean (and
spread) over the generated faces, and the largest change of another reading.

    python benchmarks/tuned_knobs.py [--faces 16] [--steps 150] [--tune-steps 120]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch
from common import setup
from invert_quality import photos

from tlgan.axes.defaults import DEFAULT_EXTRACTORS, DEFAULT_GENERATOR, load_default_axes
from tlgan.editing.editor import Editor
from tlgan.models.extractors import load_extractor
from tlgan.models.extractors.identity import load_identity
from tlgan.models.extractors.mtcnn import load_mtcnn
from tlgan.models.generators import load_generator
from tlgan.photos.pipeline import invert_photo, tune_photo
from tlgan.photos.tune import TuneSettings
from tlgan.sampling.latents import latent_for_seed

EDITS = (("happy", 1.0), ("happy", 2.0), ("happy", -1.0), ("happy", -2.0), ("yaw", -1.0), ("yaw", 1.0),
         ("brightness", 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=16)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--tune-steps", type=int, default=120)
    parser.add_argument("--out", default="benchmarks/out")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    dev = setup("cpu", args.threads)
    os.environ.setdefault("TLGAN_CACHE_DIR", str(Path(args.out) / "cache"))
    gen, axes = load_generator(DEFAULT_GENERATOR, dev), load_default_axes()
    ext, ident = load_extractor(DEFAULT_EXTRACTORS, dev), load_identity(dev)
    names = [f.name for f in ext.features]
    photo = photos(argparse.Namespace(lfw=0, faces=0), gen, dev)[0][1]
    result = invert_photo(photo, gen, load_mtcnn(dev), ext, steps=args.steps, identity_model=ident)
    tuned, _ = tune_photo(photo, result.latent_file, gen, ext, settings=TuneSettings(steps=args.tune_steps, identity_weight=0.003),
                          identity_model=ident)

    with torch.inference_mode():
        start = ext(tuned.generator.synthesize(result.latent_file.latent[None].to(dev)))[0].cpu()
        typical = ext(gen.synthesize(torch.stack([latent_for_seed(3_000_000 + i, gen.latent_dim)
                                                  for i in range(args.faces)]).to(dev))).cpu()
    print("her readings before editing (tuned reconstruction): " + ", ".join(
        f"{n} {float(start[names.index(n)]):.3f} (generated faces: median {float(typical[:, names.index(n)].median()):.3f})"
        for n in ("happy", "yaw", "brightness")))

    def change(generator, latent, knob: str, delta: float) -> torch.Tensor:
        editor = Editor(generator, axes, 0)
        editor.new_latent(latent)
        before = editor.render()
        editor.step(knob, delta)
        with torch.inference_mode():
            return (ext(editor.render()[None])[0] - ext(before[None])[0]).cpu()

    for knob, delta in EDITS:
        col = names.index(knob)
        hers = change(tuned.generator, result.latent_file.latent, knob, delta)
        gen_changes = [change(gen, latent_for_seed(3_000_000 + i, gen.latent_dim), knob, delta) for i in range(args.faces)]
        own = [float(c[col]) for c in gen_changes]
        others = torch.stack(gen_changes).abs().mean(0)
        others[col] = 0
        her_others = hers.abs().clone()
        her_others[col] = 0
        print(f"{knob} {delta:+g}σ: reading '{knob}' changes by {float(hers[col]):+.3f} on the tuned astronaut; "
              f"{statistics.mean(own):+.3f} (sd {statistics.pstdev(own):.3f}) on {args.faces} generated faces; "
              f"largest other change: hers {names[int(her_others.argmax())]} {float(her_others.max()):.3f}, "
              f"generated (mean |change|) {names[int(others.argmax())]} {float(others.max()):.3f}", flush=True)


if __name__ == "__main__":
    main()
