"""The ``tlgan`` click group with every command attached (imports the command modules; ``main`` loads it lazily)."""

from __future__ import annotations

import gc
import sys

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
    if not {"-h", "--help"} & set(sys.argv[1:]):  # a command's own help needs no torch
        import_torch_frozen()


def import_torch_frozen() -> None:
    """Import torch with the garbage collector off, then freeze what it made (every command but help uses it).

    Importing torch creates about a million long-lived objects. The collector's passes over them, while it
    imports and again when Python exits, free nothing and cost a short command about 0.4 s (``import torch``
    alone: 1.9 s -> 1.45 s on the 2-core machine). Frozen, they are left out of every later pass; the
    collector is on again for the command itself.
    """
    if "torch" in sys.modules:
        return
    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()


for _command in (build, fit, discover, info, edit, strip, exact_stats, evaluate, rename, teach, knobs, serve_command, convert,
                 import_axes, check_model, train_extractor, ingest_celeba, invert):
    cli.add_command(_command)
