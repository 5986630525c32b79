"""CLI commands for legacy assets, users' models and training (thin layers over the library).

Attach to the ``tlgan`` group: ``convert`` (group with ``pggan-tf1`` and ``stylegan``),
``import_axes``, ``check_model``, ``train_extractor``, ``ingest_celeba``. Commands raise
TlganError for bad input; the group's ``main`` prints it on one line.
"""

from __future__ import annotations

from pathlib import Path

import click

from tlgan.errors import TlganError


@click.command("pggan-tf1")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
def convert_pggan(src: Path, dst: Path) -> None:
    """Convert a PG-GAN TF1 pickle (e.g. karras2018iclr-celebahq-1024x1024.pkl) to .safetensors.

    The pickle is read without TensorFlow and without running code from it.

    \b
    Example:
      tlgan convert pggan-tf1 karras2018iclr-celebahq-1024x1024.pkl celebahq.safetensors
      tlgan build --generator pggan:celebahq.safetensors ...
    """
    from tlgan.models.generators.pggan import convert_tf1_to_safetensors

    if dst.suffix.lower() != ".safetensors":
        raise TlganError(f"output must end in .safetensors, got {dst.name}")
    config = convert_tf1_to_safetensors(src, dst)
    click.echo(f"wrote {dst}: PG-GAN {config.resolution}x{config.resolution}, latent {config.latent_dim}, "
               f"{len(config.channels)} levels")


@click.command("stylegan")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
def convert_stylegan(src: Path, dst: Path) -> None:
    """Convert a StyleGAN2/3 file (NVlabs PyTorch or TensorFlow .pkl, rosinality .pt) to .safetensors.

    NVlabs pickles are read without running the Python source they embed. Loading
    the result gives the same identity and the same images as the original file.

    \b
    Example:
      tlgan convert stylegan stylegan2-ffhq-1024x1024.pkl ffhq.safetensors
      tlgan build --generator stylegan:ffhq.safetensors --space w ...
    """
    from tlgan.models.generators.stylegan_files import convert_to_safetensors

    if dst.suffix.lower() != ".safetensors":
        raise TlganError(f"output must end in .safetensors, got {dst.name}")
    weights = convert_to_safetensors(src, dst)
    c = weights.config
    click.echo(f"wrote {dst}: {weights.family} {c.img_resolution}x{c.img_resolution}, z {c.z_dim}, w {c.w_dim}, "
               f"from {weights.origin}")


@click.group("convert")
def convert() -> None:
    """Convert legacy model files to tlgan's formats."""


convert.add_command(convert_pggan)
convert.add_command(convert_stylegan)


@click.command("import-axes")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--generator", "generator_spec", default=None,
              help="Generator the directions belong to (e.g. pggan:karras2018iclr-celebahq-1024x1024.pkl); "
                   "binds the axis set to its identity.")
@click.option("--notebook-names", is_flag=True,
              help="Use the original notebook's names and sign flips (No_Beard -> Beard, Pale_Skin -> Skin_Tone, Young -> Age).")
@click.option("--device", default="cpu", show_default=True, help="Device for loading --generator.")
def import_axes(src: Path, dst: Path, generator_spec: str | None, notebook_names: bool, device: str) -> None:
    """Import a TL-GAN feature-direction pickle (feature_direction_*.pkl) as a tlgan axis set.

    Only NumPy arrays, lists and strings are accepted from the pickle.

    \b
    Example:
      tlgan import-axes feature_direction_20181002_044444.pkl tlgan-celebahq.safetensors \\
          --generator pggan:karras2018iclr-celebahq-1024x1024.pkl --notebook-names
    """
    from tlgan.axes.original_directions import import_axes as read_axes

    identity = ""
    if generator_spec:
        from tlgan.models.generators import load_generator

        generator = load_generator(generator_spec, device)
        identity = generator.identity
    axes = read_axes(src, generator=identity, notebook_view=notebook_names)
    if generator_spec:
        axes.check_generator(generator)
    if dst.suffix.lower() != ".safetensors":
        raise TlganError(f"output must end in .safetensors, got {dst.name}")
    axes.save(dst)
    bound = f"for {identity}" if identity else "not bound to a generator (use --generator to bind it)"
    click.echo(f"wrote {dst}: {len(axes)} axes in {axes.latent_dim}-d latent space, {bound}")


@click.command("check-model")
@click.argument("spec")
@click.option("--kind", type=click.Choice(["generator", "extractor"]), default=None,
              help="What SPEC is; guessed from the spec or its declarations when left out.")
@click.option("--batch", default=4, show_default=True, help="Size of the test batch.")
@click.option("--size", default=128, show_default=True, help="Side of test images for extractors that declare none.")
@click.option("--device", default="cpu", show_default=True)
def check_model(spec: str, kind: str | None, batch: int, size: int, device: str) -> None:
    """Run a generator or extractor on a tiny batch and explain what is wrong with it.

    Checks output type, dtype, shape, NaN/inf, range, determinism, batch
    independence and sensitivity to the input. Exit status 1 if any check fails.
    entrypoint: specs import and run your Python code (by design: trust it as any
    script you run); torchscript:, onnx: and the built-in formats never run code from a file.

    \b
    Examples:
      tlgan check-model entrypoint:mypkg.models:make_generator
      tlgan check-model onnx:attributes.onnx --kind extractor
      tlgan check-model torchscript:generator.pt
    """
    from tlgan.models.check import check_model as run_checks
    from tlgan.models.check import guess_kind

    report = run_checks(spec, kind or guess_kind(spec), device=device, batch=batch, size=size)
    click.echo(report.format())
    if not report.ok:
        raise SystemExit(1)


@click.command("train-extractor")
@click.option("--celeba", "celeba_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="CelebA-format folder (images, list_attr_celeba.txt, list_eval_partition.txt).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Extractor file to write (.safetensors); load it as tlgan-cnn:OUT.")
@click.option("--arch", type=click.Choice(["small", "mobilenet"]), default="small", show_default=True)
@click.option("--width", default=32, show_default=True, help="small: channels of the first block.")
@click.option("--depth", default=4, show_default=True, help="small: number of blocks.")
@click.option("--alpha", default=1.0, show_default=True, help="mobilenet: width multiplier.")
@click.option("--hidden", default=256, show_default=True, help="mobilenet: hidden units of the head.")
@click.option("--input-size", default=128, show_default=True, help="Network input side in pixels.")
@click.option("--epochs", default=10, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="Peak learning rate (warm-up, then cosine decay).")
@click.option("--weight-decay", default=1e-4, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--no-flip", is_flag=True, help="Do not augment with horizontal flips.")
@click.option("--backbone", type=click.Path(dir_okay=False), default=None,
              help="Backbone weights: Keras MobileNet .h5 (with --arch mobilenet) or .safetensors.")
@click.option("--freeze-backbone", is_flag=True, help="Train only the head on top of --backbone.")
@click.option("--device", default="auto", show_default=True)
@click.option("--workers", default=0, show_default=True, help="Image-decoding worker processes.")
@click.option("--restart", is_flag=True, help="Discard an existing checkpoint and start over.")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps (checkpoint kept; run again to resume).")
@click.option("--checkpoint-every", default=1000, show_default=True, help="Steps between checkpoints (also at each epoch's end).")
def train_extractor(celeba_dir: Path, out: Path, arch: str, width: int, depth: int, alpha: float, hidden: int,
                    input_size: int, epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
                    no_flip: bool, backbone: str | None, freeze_backbone: bool, device: str, workers: int,
                    restart: bool, max_steps: int | None, checkpoint_every: int) -> None:
    """Train an attribute CNN on a CelebA-format folder and save it as a tlgan extractor.

    Checkpoints are written to OUT.ckpt/; running the same command again resumes.
    Prints per-attribute validation and test accuracy at the end.

    \b
    Examples:
      tlgan ingest-celeba ~/data/celeba --out ~/data/celeba-crop
      tlgan train-extractor --celeba ~/data/celeba-crop --out celeba-attributes.safetensors
      tlgan build --generator pggan:celebahq.safetensors --extractor tlgan-cnn:celeba-attributes.safetensors ...
    """
    from tlgan.training import TrainConfig
    from tlgan.training import train_extractor as train

    config = TrainConfig(arch=arch, width=width, depth=depth, alpha=alpha, hidden=hidden, input_size=input_size,
                         epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                         flip=not no_flip, backbone=backbone, freeze_backbone=freeze_backbone)
    result = train(celeba_dir, out, config, device=device, workers=workers, restart=restart, max_steps=max_steps,
                   checkpoint_every=checkpoint_every, log=click.echo)
    if not result.finished:
        click.echo(f"stopped at step {result.step}; run the same command again to resume")
        return
    click.echo(result.table.format())
    click.echo(f"wrote {out} in {result.seconds:.0f} s; use it as --extractor tlgan-cnn:{out}")


@click.command("ingest-celeba")
@click.argument("src", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the crops (default SRC/tlgan_crop).")
def ingest_celeba(src: Path, out: Path | None) -> None:
    """Check a downloaded CelebA folder and write the 128x128 crops TL-GAN trained on.

    Reports missing or malformed annotation files and missing or unreadable
    images. Interrupted runs resume. Nothing is downloaded.

    \b
    Example:
      tlgan ingest-celeba ~/data/celeba --out ~/data/celeba-crop
    """
    from tlgan.training import ingest_celeba as ingest

    result = ingest(src, out)
    click.echo(f"{result.images} images checked; {result.written} crops written, {result.skipped} already there; "
               f"train with: tlgan train-extractor --celeba {result.out} --out attributes.safetensors")
