"""The ``tlgan`` click group with every command attached (imports the command modules; ``main`` loads it lazily)."""

from __future__ import annotations

import click

from .assets import check_model, convert, import_axes, ingest_celeba, train_extractor
from .build import build, discover, fit
from .edit import edit, exact_stats, info, strip
from .evaluate import evaluate
from .knobs import knobs, rename, teach
from .photo import invert
from .serve import serve_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="tlgan")
def cli() -> None:
    """tlgan: discover feature axes in a trained generator and edit images with one knob per feature.

    \b
    Examples:
      tlgan serve                                  # web app on the default face model
      tlgan edit --seed 7 --set happy=2 --lock brightness --out face.png
      tlgan strip --axis yaw --seed 7 --out yaw.png
      tlgan build --n 20000 --out my-axes.safetensors
      tlgan invert me.jpg --out me.json            # then: tlgan edit --latent me.json --paste-into me.jpg
      tlgan info

    \b
    Your own models: --generator/--extractor entrypoint:MODULE:FUNCTION imports and
    runs your Python code by design (trust it as you trust any script you run);
    torchscript:, onnx: and the built-in formats never run code from a file.
    """


for _command in (build, fit, discover, info, edit, strip, exact_stats, evaluate, rename, teach, knobs, serve_command, convert,
                 import_axes, check_model, train_extractor, ingest_celeba, invert):
    cli.add_command(_command)
