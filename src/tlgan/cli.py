"""The ``tlgan`` command line: a thin layer over the library.

Every command turns TlganError into one line on stderr and exit status 1,
and Ctrl-C into exit status 130 with what was kept.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from .errors import TlganError
from .methods import METHODS, UNSUPERVISED

AXES_HELP = "axis set file (.safetensors); default: the shipped knob set of the default generator"


def _parse_pairs(items: tuple[str, ...], option: str) -> list[tuple[str, float]]:
    """'name=value' strings -> [(name, float)]; NaN/inf and malformed items are errors."""
    pairs = []
    for item in items:
        name, sep, raw = item.partition("=")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan if sep else None  # type: ignore[assignment]
        if not sep or not name or value is None or not math.isfinite(value):
            raise TlganError(f"{option} expects NAME=NUMBER with a finite number, got '{item}'")
        pairs.append((name.strip(), value))
    return pairs


def _load_model(generator: str | None, axes: str | None, device: str) -> tuple[Any, Any]:
    """(generator, axis set) for a command; the generator defaults to the one the axes were made for."""
    from .defaults import DEFAULT_GENERATOR, load_default_axes
    from .generators import load_generator
    from .store import load_axes

    axis_set = load_axes(axes) if axes else load_default_axes()
    gen = load_generator(generator or DEFAULT_GENERATOR, device)
    axis_set.check_generator(gen)
    return gen, axis_set


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


@cli.command()
@click.option("--generator", default="digiface", show_default=True, help="generator spec, e.g. digiface or pggan:FILE")
@click.option("--extractor", default=None, help="comma-separated extractors [default: emotion,landmarks,imagestats]")
@click.option("--n", "n", type=int, default=20000, show_default=True, help="number of samples")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("--batch-size", type=click.IntRange(1, 1 << 20), default=None,
              help="images per forward pass [default: 32 on CPU, 8192 on CUDA]")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True,
              help="precision of rendering and labelling (autocast); extractors that need float32 keep it")
@click.option("--compile", "compile_", is_flag=True, help="run the models through torch.compile (slow start, faster on GPU)")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="CPU threads [default: the CPUs this process may use; env TLGAN_THREADS]")
@click.option("--method", type=click.Choice(METHODS), default="tlgan", show_default=True,
              help="fitting method (see tlgan fit --help; sefa and pca run tlgan discover, without sampling)")
@click.option("--ridge", type=float, default=None, help="ridge penalty for --method ridge")
@click.option("--percent", type=float, default=None, help="svm: top/bottom percentage of each feature [default: 2]")
@click.option("--C", "c", type=float, default=None, help="svm/logistic: inverse regularisation strength [default: 1]")
@click.option("--shard-size", type=click.IntRange(1, 1 << 20), default=4096, show_default=True,
              help="samples per resumable shard")
@click.option("--samples", "samples_dir", type=click.Path(file_okay=False), default=None,
              help="folder for the labelled samples (resumable) [default: OUT.samples]")
@click.option("--store-samples/--no-store-samples", default=True, show_default=True,
              help="keep labelled samples on disk (resumable, refittable) or fit while sampling (flat memory, "
                   "nothing written but the axes; an interrupted run starts over)")
@click.option("--out", type=click.Path(dir_okay=False), default="axes.safetensors", show_default=True)
def build(generator: str, extractor: str | None, n: int, seed: int, device: str, batch_size: int | None, dtype: str,
          compile_: bool, threads: int | None, method: str, ridge: float | None, percent: float | None,
          c: float | None, shard_size: int, samples_dir: str | None, store_samples: bool, out: str) -> None:
    """Sample N latents, render and label them, and fit one axis per feature.

    \b
    Examples:
      tlgan build --n 20000 --out my-axes.safetensors
      tlgan build --n 1000000 --device cuda --dtype float16 --no-store-samples --out big.safetensors
    Interrupt with Ctrl-C at any time: rerunning the same command resumes (with --store-samples).
    """
    from .extractors import DEFAULT_EXTRACTORS, load_extractor
    from .fit import fit_streaming, resolve_method
    from .generators import load_generator
    from .pipeline import run_samples, set_cpu_threads

    set_cpu_threads(threads)
    if n <= 0:
        raise TlganError(f"--n must be positive, got {n}")
    if method in UNSUPERVISED:
        from .cli_eval import run_discover

        run_discover(method, 10, generator, extractor, n, seed, None, 64, device, out)
        return
    if samples_dir and not store_samples:
        raise TlganError("--samples names a folder to store samples in; drop it or --no-store-samples")
    if not store_samples:
        resolve_method(method, ridge)  # fail before hours of sampling, not after
    gen = load_generator(generator, device)
    ext = load_extractor(extractor or DEFAULT_EXTRACTORS, device)
    if not store_samples:
        click.echo(f"{gen.identity} + {ext.name}: {n:,} samples, fitted while sampling", err=True)
        axis_set = fit_streaming(gen, ext, n, seed, method=method, ridge=ridge, batch_size=batch_size, dtype=dtype,
                                 compile=compile_)
        _save(axis_set, out)
        return
    samples = Path(samples_dir) if samples_dir else Path(out).with_suffix(".samples")
    click.echo(f"{gen.identity} + {ext.name}: {n:,} samples into {samples}", err=True)
    run_samples(gen, ext, n, seed, samples, batch_size=batch_size, shard_size=shard_size, dtype=dtype,
                compile=compile_)
    _fit_and_save(str(samples), method, ridge, out, percent, c)


def _fit_and_save(samples: str, method: str, ridge: float | None, out: str, percent: float | None = None,
                  c: float | None = None) -> None:
    from .fit import fit_axes

    _save(fit_axes(samples, method=method, ridge=ridge, percent=percent, c=c), out)


def _save(axis_set: Any, out: str) -> None:
    axis_set.save(out)
    click.echo(f"wrote {len(axis_set)} axes to {out}", err=True)
    click.echo(_format_info(axis_set))


@cli.command()
@click.argument("samples", type=click.Path(file_okay=False))
@click.option("--method", type=click.Choice(METHODS), default="tlgan", show_default=True,
              help="tlgan (least squares in link space), ridge, svm (InterFaceGAN) or logistic; see docs/methods.md")
@click.option("--ridge", type=float, default=None, help="ridge penalty for --method ridge")
@click.option("--percent", type=float, default=None, help="svm: top/bottom percentage of each feature [default: 2]")
@click.option("--C", "c", type=float, default=None, help="svm/logistic: inverse regularisation strength [default: 1]")
@click.option("--out", type=click.Path(dir_okay=False), default="axes.safetensors", show_default=True)
def fit(samples: str, method: str, ridge: float | None, percent: float | None, c: float | None, out: str) -> None:
    """Fit axes from an existing sample folder (made by tlgan build).

    Unsupervised axes (sefa, pca) need the generator instead: see tlgan discover.
    """
    _fit_and_save(samples, method, ridge, out, percent, c)


def _format_info(axis_set: Any) -> str:
    lines = [
        f"generator   {axis_set.generator} ({axis_set.latent_space}, {axis_set.latent_dim}-d)",
        f"extractor   {axis_set.extractor or '-'}",
        f"method      {axis_set.method} {json.dumps(axis_set.params)}",
        f"samples     {axis_set.samples:,} (seed {axis_set.seed})",
        "",
        f"{'axis':<22}{'kind':<13}{'group':<21}{'held-out fit':>13}",
    ]
    for name, kind, group in zip(axis_set.names, axis_set.kinds, axis_set.groups):
        q = axis_set.quality.get(name, {})
        score = next((f"{ {'r2': 'R²', 'accuracy': 'acc'}[k]} {v:.3f}" for k, v in q.items() if k in ("r2", "accuracy")), "-")
        lines.append(f"{name:<22}{kind:<13}{group:<21}{score:>13}")
    return "\n".join(lines)


@cli.command()
@click.argument("axes", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the header as JSON")
def info(axes: str | None, as_json: bool) -> None:
    """Show what an axis set holds, with fit quality (default: the shipped set)."""
    from .defaults import load_default_axes
    from .store import load_axes

    axis_set = load_axes(axes) if axes else load_default_axes()
    click.echo(json.dumps(axis_set.header(), indent=2) if as_json else _format_info(axis_set))


@cli.command()
@click.option("--axes", type=click.Path(dir_okay=False), default=None, help=AXES_HELP)
@click.option("--generator", default=None, help="generator spec [default: digiface]")
@click.option("--seed", type=int, default=0, show_default=True, help="the starting face")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="set a knob to VALUE σ (repeatable)")
@click.option("--step", "steps", multiple=True, metavar="NAME=DELTA", help="change a knob by DELTA σ (repeatable)")
@click.option("--lock", "locks", multiple=True, metavar="NAME", help="keep this knob fixed (repeatable)")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="image to write (.png/.webp/.jpg)")
@click.option("--size", type=click.IntRange(16, 4096), default=256, show_default=True, help="output size in px")
@click.option("--json", "as_json", is_flag=True, help="print knob values before/after and the extractors' readings")
@click.option("--extractor", default=None, help="extractors for --json readings [default: the axes' own]")
@click.option("--device", default="auto", show_default=True)
def edit(axes: str | None, generator: str | None, seed: int, sets: tuple[str, ...], steps: tuple[str, ...],
         locks: tuple[str, ...], out: str | None, size: int, as_json: bool, extractor: str | None, device: str) -> None:
    """Render face SEED after setting/stepping knobs, with locked knobs held fixed.

    \b
    Example:
      tlgan edit --seed 3 --set happy=2 --step yaw=-0.4 --lock brightness --out face.png --json
    Edits apply in order: all --set, then all --step.
    """
    from .editor import Editor
    from .imaging import save_image, to_pil

    set_pairs, step_pairs = _parse_pairs(sets, "--set"), _parse_pairs(steps, "--step")
    if not out and not as_json:
        raise TlganError("nothing to do: give --out FILE and/or --json")
    gen, axis_set = _load_model(generator, axes, device)
    editor = Editor(gen, axis_set, seed)
    editor.set_locks(locks)
    before = editor.values()
    for name, value in set_pairs:
        editor.set(name, value)
    for name, delta in step_pairs:
        editor.step(name, delta)
    image = editor.render()
    if out:
        save_image(to_pil(image, size), out)
    if as_json:
        report: dict[str, Any] = {"seed": seed, "locks": sorted(editor.locks),
                                  "edits": [e.to_dict() for e in editor.edits], "before": before, "after": editor.values()}
        report["readings"] = _readings(image, extractor or axis_set.extractor_spec(), device)
        click.echo(json.dumps(report, indent=2))


def _readings(image: Any, spec: str, device: str) -> dict[str, float]:
    import torch

    from .extractors import load_extractor

    ext = load_extractor(spec, device)
    with torch.inference_mode():
        values = ext(image[None].to(next(ext.parameters(), torch.empty(0)).device))[0].cpu()
    return {f.name: float(v) for f, v in zip(ext.features, values)}


@cli.command()
@click.option("--axis", "axis", required=True, help="knob to sweep")
@click.option("--axes", type=click.Path(dir_okay=False), default=None, help=AXES_HELP)
@click.option("--generator", default=None, help="generator spec [default: digiface]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--lock", "locks", multiple=True, metavar="NAME", help="keep this knob fixed (repeatable)")
@click.option("--range", "span", type=click.FloatRange(0.1, 10), default=3.0, show_default=True, help="sweep ±RANGE σ")
@click.option("--steps", type=click.IntRange(2, 64), default=7, show_default=True, help="images in the strip")
@click.option("--size", type=click.IntRange(16, 1024), default=128, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--device", default="auto", show_default=True)
def strip(axis: str, axes: str | None, generator: str | None, seed: int, locks: tuple[str, ...], span: float,
          steps: int, size: int, out: str, device: str) -> None:
    """A row of images of face SEED with knob AXIS set from −RANGE to +RANGE σ."""
    from .editor import Editor
    from .imaging import grid, save_image

    gen, axis_set = _load_model(generator, axes, device)
    axis_set.index(axis)
    images = []
    for i in range(steps):
        editor = Editor(gen, axis_set, seed)
        editor.set_locks(locks)
        editor.set(axis, -span + 2 * span * i / (steps - 1))
        images.append(editor.render())
    save_image(grid(images, size=size), out)
    click.echo(f"wrote {out}", err=True)


from .cli_assets import check_model, convert, import_axes, ingest_celeba, train_extractor  # noqa: E402
from .cli_eval import COMMANDS as _EVAL_COMMANDS  # noqa: E402  (evaluate, discover, rename, teach)

from .web.cli import serve_command  # noqa: E402

for _command in (serve_command, convert, import_axes, check_model, train_extractor, ingest_celeba, *_EVAL_COMMANDS):
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
