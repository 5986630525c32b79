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
@click.option("--preview", type=click.Path(dir_okay=False), default=None,
              help="also write aligned crop | reconstruction | tuned reconstruction (.png)")
@click.option("--tune/--no-tune", default=True, show_default=True,
              help="pivotal tuning: also fit a small update of the generator around the latent (NAME.tune.safetensors)")
@click.option("--tune-steps", type=click.IntRange(0, 20000), default=200, show_default=True, help="tuning steps")
@click.option("--identity/--no-identity", default=True, show_default=True,
              help="add the face-identity distance (dlib's face descriptor) to the inversion and tuning")
@click.option("--device", default="auto", show_default=True)
def invert(photo: str, out: str, generator: str | None, space: str, steps: int, candidates: int, starts: int,
           face: int | None, seed: int, extractor: str | None, preview: str | None, tune: bool, tune_steps: int,
           identity: bool, device: str) -> None:
    """Find the face in PHOTO, align it to the generator's face layout and invert it into a latent file.

    \b
    Example:
      tlgan invert me.jpg --out me.json
      tlgan edit --latent me.json --set happy=2 --paste-into me.jpg --out me-happy.jpg
    Several faces: the largest is used, or --face N (0 = largest). The file holds the
    latent, the generator's identity, the alignment and the reconstruction PSNR. With
    tuning (the default) me.tune.safetensors beside it holds the generator's update for
    this photo; 'tlgan edit --latent' uses it (--no-tune there ignores it).
    """
    from tlgan.axes.defaults import DEFAULT_EXTRACTORS, DEFAULT_GENERATOR
    from tlgan.devices import resolve_device
    from tlgan.photos.pipeline import TUNE_IDENTITY_WEIGHT, invert_photo, save_photo_files, tune_photo
    from tlgan.photos.tune import TuneSettings
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
    ident = None
    if identity:
        from tlgan.models.extractors.identity import load_identity

        try:
            ident = load_identity(dev)
        except TlganError as exc:
            click.echo(f"warning: no identity term ({exc})", err=True)
    result = invert_photo(picture, gen, detector, ext, face=face, space=space, steps=steps, seed=seed,
                          candidates=candidates, starts=starts, progress=True, identity_model=ident)
    inv = result.inversion
    tuned = tuning_file = None
    if tune:
        settings = TuneSettings(steps=tune_steps, seed=seed,
                                identity_weight=TUNE_IDENTITY_WEIGHT if ident is not None else 0.0)
        tuned, tuning_file = tune_photo(picture, result.latent_file, gen, ext, settings=settings, identity_model=ident,
                                        progress=True)
    written = save_photo_files(out, result.latent_file, tuning_file)
    if preview:
        images = [result.crop, inv.image]
        if tuned is not None:
            import torch

            from tlgan.photos.invert import render

            with torch.no_grad():
                images.append(render(tuned.generator, result.latent_file.latent[None].to(dev), space)[0].float().cpu())
        save_image(grid(images, size=256), preview)
    ident_text = f", identity distance {inv.identity:.3f}" if inv.identity is not None else ""
    click.echo(f"face {0 if face is None else face} of {result.faces} (largest first); reconstruction PSNR "
               f"{inv.psnr:.2f} dB (best sampled start {inv.start_psnr:.2f} dB){ident_text}; wrote {out}", err=True)
    if tuned is not None and written.tuning:
        q = tuned.quality()
        id_text = (f", identity {q['identity_before']:.3f} -> {q['identity_after']:.3f}"
                   if q["identity_after"] is not None else "")
        click.echo(f"tuned: PSNR {q['psnr_before_db']:.2f} -> {q['psnr_after_db']:.2f} dB{id_text}; random faces change "
                   f"by {q['locality_psnr_db']:.1f} dB PSNR; {tuned.seconds:.1f} s; wrote {written.tuning['file']} "
                   f"({tuned.delta.numel() * 4 / 1024:.0f} KiB of weights)", err=True)

