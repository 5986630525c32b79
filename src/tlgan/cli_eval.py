"""CLI commands for evaluation and the methods beyond least squares: evaluate, discover, rename, teach.

Plain click commands, attached to the ``tlgan`` group in cli.py; each is a
thin layer over tlgan.evaluate, tlgan.report, tlgan.methods and tlgan.axisops.
"""

from __future__ import annotations

import json

import click

from .errors import TlganError


@click.command()
@click.argument("axes", required=False, type=click.Path(dir_okay=False))
@click.option("--n", "n", type=int, default=500, show_default=True, help="fresh faces to move along every axis")
@click.option("--seed", type=int, default=None,
              help="evaluation seed (must differ from the fit's) [default: 424242]")
@click.option("--range", "span", type=click.FloatRange(0.1, 10), default=3.0, show_default=True,
              help="sweep each knob from −RANGE to +RANGE σ")
@click.option("--steps", type=click.IntRange(3, 33), default=7, show_default=True,
              help="points in the sweep (odd: 0 is added when missing)")
@click.option("--no-locked", is_flag=True, help="skip the matrix with the other supervised axes locked")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="write the results here")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="write heatmaps, strips and index.html into this folder")
@click.option("--generator", default=None, help="generator spec [default: digiface]")
@click.option("--extractor", default=None, help="extractors to re-score with [default: the ones the axes name]")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 1 << 16), default=256, show_default=True)
def evaluate(axes: str | None, n: int, seed: int | None, span: float, steps: int, no_locked: bool, json_out: str | None,
             report_dir: str | None, generator: str | None, extractor: str | None, device: str,
             batch_size: int) -> None:
    """Measure every axis of AXES (default: the shipped set) on fresh faces: fit quality, re-scoring matrix (free
    and locked), monotonicity, faces kept, cosine similarity.

    \b
    Example:
      tlgan evaluate my-axes.safetensors --n 500 --json eval.json --report eval-report/
    The JSON format is documented in docs/evaluate.md.
    """
    from .cli import _load_model
    from .evaluate import DEFAULT_SEED, evaluate as run_evaluation
    from .extractors import load_extractor
    from .pipeline import set_cpu_threads
    from .report import write_report

    if not json_out and not report_dir:
        raise TlganError("nothing to write: give --json FILE and/or --report DIR")
    set_cpu_threads()
    gen, axis_set = _load_model(generator, axes, device)
    ext = load_extractor(extractor or axis_set.extractor_spec(), device)
    offsets = sorted({round(-span + 2 * span * i / (steps - 1), 6) for i in range(steps)} | {0.0})
    result = run_evaluation(gen, ext, axis_set, n=n, seed=DEFAULT_SEED if seed is None else seed, sweep=offsets,
                            locked=not no_locked, batch_size=batch_size)
    if json_out:
        from .atomic import write_text_atomic

        write_text_atomic(json_out, json.dumps(result.to_dict(), indent=1, allow_nan=False))
        click.echo(f"wrote {json_out}", err=True)
    if report_dir:
        click.echo(f"wrote {write_report(result, report_dir)}", err=True)
    click.echo(format_summary(result.to_dict()))


def format_summary(data: dict) -> str:
    """A terminal table of an evaluation's per-axis numbers."""
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:+.2f}"

    lines = [f"{'axis':<22}{'fit':>8}{'diag':>8}{'worst leak':>26}{'mono':>7}{'faces':>7}{'locked diag':>13}"]
    for a in data["axes"]:
        q = a["fit_quality"]["fresh"]
        leak = a["worst_leak"]
        leak_s = f"{leak['feature'][:16]} {leak['effect']:+.2f}" if leak else "-"
        locked = a["locked"] or {}
        lines.append(f"{a['name']:<22}{'-' if q is None else f'{q:.2f}':>8}{f(a['diagonal']):>8}{leak_s:>26}"
                     f"{'-' if a['monotonicity'] is None else format(a['monotonicity'], '.2f'):>7}"
                     f"{'-' if a['faces_kept'] is None else format(a['faces_kept'], '.2f'):>7}"
                     f"{f(locked.get('diagonal')):>13}")
    return "\n".join(lines)


@click.command()
@click.option("--method", type=click.Choice(["sefa", "pca"]), required=True)
@click.option("--components", "-k", type=click.IntRange(1, 4096), default=10, show_default=True,
              help="number of axes")
@click.option("--generator", default="digiface", show_default=True, help="generator spec")
@click.option("--extractor", default=None,
              help="extractors that label each axis [default: emotion,landmarks,imagestats]; 'none' skips labelling")
@click.option("--n", "n", type=int, default=5000, show_default=True, help="pca: sampled latents")
@click.option("--seed", type=int, default=0, show_default=True, help="pca: latent seed")
@click.option("--layer", default=None, help="pca: submodule whose output is analysed [default: first nonlinearity]")
@click.option("--label-faces", type=click.IntRange(2, 100000), default=64, show_default=True,
              help="faces swept to label each axis")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default="axes.safetensors", show_default=True)
def discover(method: str, components: int, generator: str, extractor: str | None, n: int, seed: int,
             layer: str | None, label_faces: int, device: str, out: str) -> None:
    """Find unsupervised axes (SeFa or GANSpace PCA), named METHOD_0, METHOD_1, ..., labelled by the extractors.

    \b
    Example:
      tlgan discover --method sefa -k 12 --out sefa.safetensors
      tlgan rename sefa.safetensors sefa_0=pose sefa_3=light
    """
    run_discover(method, components, generator, extractor, n, seed, layer, label_faces, device, out)


def run_discover(method: str, components: int, generator: str, extractor: str | None, n: int, seed: int,
                 layer: str | None, label_faces: int, device: str, out: str) -> None:
    """What ``tlgan discover`` (and ``tlgan build --method sefa|pca``) do."""
    from .cli import _format_info
    from .extractors import DEFAULT_EXTRACTORS, load_extractor
    from .generators import load_generator
    from .methods.discover import discover_axes
    from .pipeline import set_cpu_threads

    set_cpu_threads()
    if n <= 0:
        raise TlganError(f"--n must be positive, got {n}")
    gen = load_generator(generator, device)
    ext = None if extractor == "none" else load_extractor(extractor or DEFAULT_EXTRACTORS, device)
    axis_set = discover_axes(gen, method, components, ext, n=n, seed=seed, layer=layer, label_faces=label_faces)
    axis_set.save(out)
    click.echo(f"wrote {len(axis_set)} axes to {out}", err=True)
    click.echo(_format_info(axis_set))
    for name in axis_set.names:
        if name in axis_set.descriptions:
            click.echo(f"  {name}: {axis_set.descriptions[name]}")


@click.command()
@click.argument("axes", type=click.Path(dir_okay=False, exists=False))
@click.argument("renames", nargs=-1, metavar="OLD=NEW...")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="write here [default: overwrite AXES]")
def rename(axes: str, renames: tuple[str, ...], out: str | None) -> None:
    """Rename axes of an axis set, e.g. tlgan rename sefa.safetensors sefa_0=head_turn sefa_2=light."""
    from .axisops import parse_renames, rename_axes
    from .store import load_axes

    axis_set = rename_axes(load_axes(axes), parse_renames(renames))
    axis_set.save(out or axes)
    click.echo(f"wrote {out or axes}: {', '.join(axis_set.names)}", err=True)


@click.command()
@click.argument("name")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False), required=True,
              help="CSV with a header: seed,label (or index,label with --samples); labels are 0 or 1")
@click.option("--axes", type=click.Path(dir_okay=False), default=None,
              help="axis set to add the knob to [default: the shipped set]")
@click.option("--samples", type=click.Path(file_okay=False), default=None,
              help="sample folder whose faces an 'index' column numbers")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="where to write the new set [default: overwrite --axes; required without --axes]")
@click.option("--group", default="other", show_default=True, help="where the web app shows the knob")
@click.option("--C", "c", type=float, default=1.0, show_default=True, help="inverse L2 penalty of the regression")
@click.option("--replace", "replace_existing", is_flag=True, help="overwrite an existing axis called NAME")
def teach(name: str, labels_file: str, axes: str | None, samples: str | None, out: str | None, group: str, c: float,
          replace_existing: bool) -> None:
    """Make a knob NAME from a few dozen yes/no labels of faces (e.g. glasses, hats) and add it to an axis set.

    \b
    Example (label faces you looked at with `tlgan edit --seed S --out face.png`):
      printf 'seed,label\\n3,1\\n8,0\\n...' > glasses.csv
      tlgan teach glasses --labels glasses.csv --axes my-axes.safetensors
    At least 20 labelled faces, with at least 5 of each label.
    """
    from .defaults import load_default_axes
    from .methods.teach import read_labels, teach as add_taught
    from .store import load_axes

    if axes is None and out is None:
        raise TlganError("give --out FILE: the shipped axis set is not overwritten")
    axis_set = load_axes(axes) if axes else load_default_axes()
    if samples is not None:
        from .pipeline import read_manifest

        manifest = read_manifest(samples)
        if axis_set.generator and manifest.generator != axis_set.generator:
            raise TlganError(f"{samples} holds faces of generator '{manifest.generator}', "
                             f"the axis set is for '{axis_set.generator}'")
    labels = read_labels(labels_file, name, axis_set.latent_dim, samples)
    new = add_taught(axis_set, name, labels, c=c, group=group, replace_existing=replace_existing,
                     samples=str(samples) if samples else None)
    target = out or axes
    new.save(target)
    record = new.params["taught"][name]
    click.echo(f"wrote {target}: axis '{name}' from {record['labels']} labels ({record['positives']} yes), "
               f"{record['folds']}-fold cross-validated accuracy {record['cv_accuracy']:.2f}")


COMMANDS = [evaluate, discover, rename, teach]
