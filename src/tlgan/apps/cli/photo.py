"""tlgan invert: a photo's face into a latent file that ``tlgan edit --latent`` edits like a seed."""

from __future__ import annotations

import click

from tlgan.errors import TlganError


@click.command()
@click.argument("photo", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="latent file to write (.json)")
@click.option("--generator", default=None, help="generator spec [default: digiface]")
@click.option("--space", default="z", show_default=True, help="latent space: z, or w / w+ for generators with a mapping")
@click.option("--steps", type=click.IntRange(0, 20000), default=500, show_default=True, help="optimisation steps")
@click.option("--candidates", type=click.IntRange(1, 100000), default=1024, show_default=True,
              help="sampled latents the starts are picked from")
@click.option("--starts", type=click.IntRange(1, 64), default=8, show_default=True,
              help="best candidates optimised together, halved until one is left")
@click.option("--face", type=click.IntRange(0, None), default=None, help="which face, 0 = largest [default: 0]")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the sampled starting latents")
@click.option("--extractor", default=None, help="extractors for the perceptual term [default: the shipped knobs' own; 'none' for pixels only]")
@click.option("--preview", type=click.Path(dir_okay=False), default=None, help="also write aligned crop | reconstruction (.png)")
@click.option("--device", default="auto", show_default=True)
def invert(photo: str, out: str, generator: str | None, space: str, steps: int, candidates: int, starts: int,
           face: int | None, seed: int, extractor: str | None, preview: str | None, device: str) -> None:
    """Find the face in PHOTO, align it to the generator's face layout and invert it into a latent file.

    \b
    Example:
      tlgan invert me.jpg --out me.json
      tlgan edit --latent me.json --set happy=2 --paste-into me.jpg --out me-happy.jpg
    Several faces: the largest is used, or --face N (0 = largest). The file holds the
    latent, the generator's identity, the alignment and the reconstruction PSNR.
    """
    from tlgan.axes.defaults import DEFAULT_EXTRACTORS, DEFAULT_GENERATOR
    from tlgan.devices import resolve_device
    from tlgan.photos.latentfile import save_latent_file
    from tlgan.photos.pipeline import invert_photo
    from tlgan.imaging import grid, save_image
    from tlgan.models.extractors import load_extractor
    from tlgan.models.extractors.mtcnn import load_mtcnn
    from tlgan.models.generators import load_generator
    from tlgan.photos import open_photo

    if not out.lower().endswith(".json"):
        raise TlganError(f"--out must end in .json: {out}")
    picture = open_photo(photo)
    dev = resolve_device(device)
    gen = load_generator(generator or DEFAULT_GENERATOR, dev)
    detector = load_mtcnn(dev)
    spec = extractor or DEFAULT_EXTRACTORS
    ext = None if spec == "none" else load_extractor(spec, dev)
    result = invert_photo(picture, gen, detector, ext, face=face, space=space, steps=steps, seed=seed,
                          candidates=candidates, starts=starts, progress=True)
    save_latent_file(out, result.latent_file)
    if preview:
        save_image(grid([result.crop, result.inversion.image], size=256), preview)
    inv = result.inversion
    click.echo(f"face {0 if face is None else face} of {result.faces} (largest first); reconstruction PSNR "
               f"{inv.psnr:.2f} dB (best sampled start {inv.start_psnr:.2f} dB); wrote {out}", err=True)
