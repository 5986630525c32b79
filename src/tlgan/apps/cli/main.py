"""The ``tlgan`` command line: one entry point over the command modules of this folder.

Every command turns TlganError into one line on stderr and exit status 1,
and Ctrl-C into exit status 130 with what was kept.
"""

from __future__ import annotations

import sys

import click

from tlgan.errors import TlganError

from .assets import check_model, convert, import_axes, ingest_celeba, train_extractor
from .build import build, discover, fit
from .edit import edit, exact_stats, info, strip
from .evaluate import evaluate
from .knobs import rename, teach
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
      tlgan info
    """


for _command in (build, fit, discover, info, edit, strip, exact_stats, evaluate, rename, teach, serve_command, convert,
                 import_axes, check_model, train_extractor, ingest_celeba):
    cli.add_command(_command)


def main() -> None:
    """Console entry point: run the CLI with one-line errors."""
    try:
        cli.main(standalone_mode=False)
    except TlganError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        click.echo("interrupted: finished work is kept; rerun the same command to resume", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
