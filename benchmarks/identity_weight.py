"""The identity term's weight in pivotal tuning: PSNR, identity (dlib's own pipeline as judge) and locality per weight.

For each photo: one inversion (no identity term), then tuning with each weight in --weights from the same
latent. Printed: PSNR of the tuned reconstruction against the aligned crop (face-weighted), the dlib distance
between the photo and the pasted-back reconstruction, and the mean PSNR of random faces, tuned vs base.

    python benchmarks/identity_weight.py [--photos astronaut,grace_hopper,generated-0] [--weights 0,0.003,0.01,0.03,0.1]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

import torch
from common import setup
from invert_quality import Judge, photos

from tlgan.axes.defaults import DEFAULT_EXTRACTORS, DEFAULT_GENERATOR
from tlgan.models.extractors import load_extractor
from tlgan.models.extractors.identity import load_identity
from tlgan.models.extractors.mtcnn import load_mtcnn
from tlgan.models.generators import load_generator
from tlgan.photos import align
from tlgan.photos.invert import psnr
from tlgan.photos.pipeline import invert_photo, loss_weight, paste_into, tune_photo
from tlgan.photos.tune import TuneSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="astronaut,grace_hopper,generated-0")
    parser.add_argument("--weights", default="0,0.003,0.01,0.03,0.1")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--tune-steps", type=int, default=150)
    parser.add_argument("--out", default="benchmarks/out")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    dev = setup("cpu", args.threads)
    os.environ.setdefault("TLGAN_CACHE_DIR", str(Path(args.out) / "cache"))
    gen = load_generator(DEFAULT_GENERATOR, dev)
    detector, ext, ident, judge = load_mtcnn(dev), load_extractor(DEFAULT_EXTRACTORS, dev), load_identity(dev), Judge()
    layout = align.face_layout(gen, detector)
    weight = loss_weight(layout)
    wanted = args.photos.split(",")
    ns = argparse.Namespace(lfw=0, faces=max([int(n.split("-")[1]) + 1 for n in wanted if n.startswith("generated-")] or [0]))
    for name, photo, _ in photos(ns, gen, dev):
        if name not in wanted:
            continue
        reference = judge.descriptor(photo.image)
        result = invert_photo(photo, gen, detector, ext, steps=args.steps, layout=layout)
        box = result.face.box
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        crop = align.warp_face(photo.image, result.latent_file.matrix(), gen.resolution)
        d0 = judge.distance(reference, paste_into(photo, result.latent_file, result.inversion.image)[0], centre)
        print(f"{name} untuned: PSNR {result.inversion.psnr:.2f} dB, dlib {d0}")
        for w in [float(v) for v in args.weights.split(",")]:
            settings = replace(TuneSettings(steps=args.tune_steps), identity_weight=w)
            tuned, _ = tune_photo(photo, result.latent_file, gen, ext, settings=settings, identity_model=ident)
            with torch.no_grad():
                image = tuned.generator.synthesize(result.latent_file.latent[None])[0].float()
            d = judge.distance(reference, paste_into(photo, result.latent_file, image)[0], centre)
            print(f"{name} tune identity weight {w:g}: PSNR {psnr(image, crop, weight):.2f} dB, dlib "
                  f"{'n/a' if d is None else f'{d:.3f}'}, port {tuned.quality()['identity_after']}, locality "
                  f"{tuned.locality_psnr:.1f} dB, {tuned.seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
