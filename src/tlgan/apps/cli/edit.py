"""tlgan info, edit, strip and exact-stats: look at an axis set and render edited faces."""

from __future__ import annotations

import json
from typing import Any

import click

from tlgan.errors import TlganError

EXIT_UNREACHED = 3  # tlgan edit --exact: a goal was out of reach with the locks given (docs/exact.md)

from .common import (
    AXES_HELP,
    KNOBS_DIR_HELP,
    format_info,
    load_model,
    parse_pairs,
    readings,
)


@click.command()
@click.argument("axes", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the header as JSON")
def info(axes: str | None, as_json: bool) -> None:
    """Show what an axis set holds, with fit quality (default: the shipped set)."""
    from tlgan.axes.defaults import load_default_axes
    from tlgan.axes.store import load_axes

    axis_set = load_axes(axes) if axes else load_default_axes()
    click.echo(json.dumps(axis_set.header(), indent=2) if as_json else format_info(axis_set))


@click.command()
@click.option("--axes", type=click.Path(dir_okay=False), default=None, help=AXES_HELP)
@click.option("--generator", default=None, help="generator spec [default: digiface]")
@click.option("--seed", type=int, default=None, help="the starting face [default: 0]")
@click.option("--latent", "latent_path", type=click.Path(dir_okay=False), default=None,
              help="start from a latent file (from 'tlgan invert') instead of a seed")
@click.option("--no-tune", "no_tune", is_flag=True,
              help="with --latent: ignore the photo's tuning file (the untuned generator, as before tuning existed)")
@click.option("--paste-into", "paste_into", type=click.Path(dir_okay=False), default=None,
              help="blend the edited face back into this photo (the one given to 'tlgan invert'); --out gets the photo")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="set a knob to VALUE σ (repeatable)")
@click.option("--step", "steps", multiple=True, metavar="NAME=DELTA", help="change a knob by DELTA σ (repeatable)")
@click.option("--lock", "locks", multiple=True, metavar="NAME",
              help="keep this knob fixed (repeatable); 'identity' keeps the person (held by --exact, measured otherwise)")
@click.option("--lock-others", is_flag=True, help="lock every knob that no --set/--step moves")
@click.option("--identity", "show_identity", is_flag=True,
              help="report how far the edited face is from the one it started as (on with --lock identity)")
@click.option("--identity-tolerance", type=click.FloatRange(0.01, 1.0), default=None,
              help="how far a held identity may drift, as a dlib descriptor distance [default: 0.1, where dlib sees "
                   "no difference; another person is about 0.6-0.7]")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="image to write (.png/.webp/.jpg)")
@click.option("--size", type=click.IntRange(16, 4096), default=256, show_default=True, help="output size in px")
@click.option("--json", "as_json", is_flag=True, help="print knob values before/after and the extractors' readings")
@click.option("--extractor", default=None, help="extractors for --json readings and --exact [default: the axes' own]")
@click.option("--exact", is_flag=True,
              help="exact mode: knob values are the extractor's standardised readings, and locked readings are held")
@click.option("--best-effort", is_flag=True,
              help="--exact: when a goal is out of reach, write the furthest point reached and exit 0 "
                   f"[default: write nothing and exit {EXIT_UNREACHED}]")
@click.option("--layers", default=None,
              help="StyleGAN axes in w: move only these w inputs (FIRST-LAST, e.g. 0-5, or coarse/middle/fine)")
@click.option("--nvlabs-seeds", is_flag=True,
              help="face SEED as NVlabs' scripts draw it (np.random.RandomState(seed).randn(1, z_dim))")
@click.option("--device", default="auto", show_default=True)
@click.option("--knobs-dir", default=None, help=KNOBS_DIR_HELP)
@click.option("--library/--no-library", default=True, show_default=True, help="add the knob library's taught knobs")
def edit(axes: str | None, generator: str | None, seed: int | None, latent_path: str | None, no_tune: bool,
         paste_into: str | None, sets: tuple[str, ...], steps: tuple[str, ...], locks: tuple[str, ...],
         lock_others: bool, show_identity: bool, identity_tolerance: float | None, out: str | None, size: int, as_json: bool, extractor: str | None, exact: bool,
         best_effort: bool, layers: str | None, nvlabs_seeds: bool, device: str, knobs_dir: str | None,
         library: bool) -> None:
    """Render face SEED (or a photo's latent file) after setting/stepping knobs, with locked knobs held fixed.

    \b
    Examples:
      tlgan edit --seed 3 --set happy=2 --step yaw=-0.4 --lock brightness --out face.png --json
      tlgan edit --generator stylegan:ffhq.pkl --axes ffhq-w.safetensors --seed 85 --nvlabs-seeds \\
          --set smile=2 --layers 0-5 --out face.png
      tlgan edit --latent me.json --set happy=2 --paste-into me.jpg --out me-happy.jpg
      tlgan edit --exact --seed 7 --set happy=2 --lock yaw --lock brightness --out face.png --json
      tlgan edit --exact --seed 7 --set happy=2 --lock-others --out face.png
    Edits apply in order: all --set, then all --step. Linear mode (default) moves along the knobs' global
    axes; --exact follows a path for this face on which the locked readings stay within 0.02 SD.
    Exit status: 0 done; 1 bad input; 3 (--exact) a goal was out of reach with these locks: one line on
    stderr says how far it got and which lock is in the way, nothing is written (--best-effort: the
    furthest point reached is written and the status is 0); --json reports "converged": false either way.
    """
    import torch

    from tlgan.editing.editor import Editor
    from tlgan.imaging import save_image, to_pil

    set_pairs, step_pairs = parse_pairs(sets, "--set"), parse_pairs(steps, "--step")
    if not out and not as_json:
        raise TlganError("nothing to do: give --out FILE and/or --json")
    if latent_path and seed is not None:
        raise TlganError("give --seed or --latent, not both")
    if paste_into and not latent_path:
        raise TlganError("--paste-into needs --latent (the file 'tlgan invert' wrote for that photo)")
    if paste_into and not out:
        raise TlganError("--paste-into needs --out for the edited photo")
    latent_file = picture = None
    if latent_path:
        from tlgan.photos.latentfile import load_latent_file

        latent_file = load_latent_file(latent_path)   # checked before the model loads
    if paste_into:
        from tlgan.photos import open_photo

        picture = open_photo(paste_into)
    seed = 0 if seed is None else seed
    gen, axis_set = load_model(generator, axes, device, knobs_dir, library)
    if latent_path:
        from tlgan.photos.pipeline import load_photo_latent

        latent_file, gen, tune_warnings = load_photo_latent(latent_path, gen, tune=not no_tune)
        for warning in tune_warnings:
            click.echo(f"warning: {warning}", err=True)
    ext = None
    if exact:
        from tlgan.models.extractors import load_extractor

        ext = load_extractor(extractor or axis_set.extractor_spec(), device)
    editor = Editor(gen, axis_set, seed, layers=layers, seeds="nvlabs" if nvlabs_seeds else "tlgan", extractor=ext,
                    exact=exact, **({} if identity_tolerance is None else {"identity_tolerance": identity_tolerance}))
    if latent_file is not None:
        from tlgan.photos.latentfile import check_for

        check_for(latent_file, gen, axis_set.latent_space)
        editor.new_latent(latent_file.latent)
    moved = {name for name, _ in (*set_pairs, *step_pairs)}
    if lock_others:
        for name in moved:
            axis_set.index(name)  # an unknown knob is named as such, not as "locked"
        locks = (*locks, *(n for n in axis_set.names if n not in moved))
    clash = sorted(moved & set(locks))
    if clash:
        raise TlganError(f"knob '{clash[0]}' is both moved and locked; drop its --lock")
    editor.set_locks(locks)
    before = editor.values()
    before_exact = editor.exact_values() if exact else None
    failed: dict[str, Any] | None = None
    for op, pairs in ((editor.set, set_pairs), (editor.step, step_pairs)):
        for name, value in pairs:
            if failed is not None and not best_effort:
                break
            op(name, value)
            last = editor.last_report()
            if last is not None and not last["converged"]:
                failed = failed or last
                if best_effort:
                    click.echo(f"warning: {last['message']}", err=True)
    typical = editor.typicality()
    if typical["warn"]:
        click.echo(f"warning: {typical['message']}", err=True)
    identity = None
    if show_identity or "identity" in editor.locks:
        identity = editor.identity()
        if not identity.kept:
            click.echo(f"warning: identity: {identity.message()} (tolerance {identity.tolerance:g})", err=True)
    from tlgan.editing.exact import fixed_cpu_threads

    with fixed_cpu_threads(torch.device("cpu")):  # the thread count exact mode uses: the same bytes anywhere
        image = editor.render()
    if failed is not None and not best_effort:
        out = None  # nothing is written for a goal out of reach (--best-effort writes the furthest point)
    if picture is not None and latent_file is not None and out:
        from tlgan.photos.pipeline import paste_into as paste
        from tlgan.photos import save_photo

        pasted, warnings = paste(picture, latent_file, image)
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        save_photo(pasted, out, picture.icc_profile)
    elif out:
        save_image(to_pil(image, size), out)
    if as_json:
        report: dict[str, Any] = {"seed": None if latent_file else seed, "latent": latent_path,
                                  "mode": "exact" if exact else "linear", "locks": sorted(editor.locks),
                                  "edits": [e.to_dict() for e in editor.edits], "before": before, "after": editor.values()}
        if exact:
            report["exact_before"], report["exact_after"] = before_exact, editor.exact_values()
            report["exact_reports"] = [r for r in editor.reports if r is not None]
        report["typicality"] = typical
        if identity is not None:
            report["identity"] = identity.to_dict()
        report["converged"] = failed is None
        report["written"] = out
        report["readings"] = readings(image, extractor or axis_set.extractor_spec(), device)
        click.echo(json.dumps(report, indent=2))
    if failed is not None and not best_effort:
        click.echo(f"error: {failed['message']} (--best-effort writes the furthest point reached)", err=True)
        raise SystemExit(EXIT_UNREACHED)


def _warn_exact(editor: Any) -> None:
    """Say on stderr when an exact edit stopped short of its goal (never silent)."""
    report = editor.last_report()
    if report is not None and not report["converged"]:
        click.echo(f"warning: {report['message']}", err=True)

@click.command()
@click.option("--axis", "axis", required=True, help="knob to sweep")
@click.option("--axes", type=click.Path(dir_okay=False), default=None, help=AXES_HELP)
@click.option("--generator", default=None, help="generator spec [default: digiface]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--lock", "locks", multiple=True, metavar="NAME",
              help="keep this knob fixed (repeatable); 'identity' keeps the person (with --exact)")
@click.option("--range", "span", type=click.FloatRange(0.1, 10), default=3.0, show_default=True, help="sweep ±RANGE σ")
@click.option("--steps", type=click.IntRange(2, 64), default=7, show_default=True, help="images in the strip")
@click.option("--size", type=click.IntRange(16, 1024), default=128, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--exact", is_flag=True, help="exact mode: set the knob's standardised reading, holding locked readings")
@click.option("--extractor", default=None, help="extractors for --exact [default: the axes' own]")
@click.option("--layers", default=None,
              help="StyleGAN axes in w: move only these w inputs (FIRST-LAST, e.g. 0-5, or coarse/middle/fine)")
@click.option("--nvlabs-seeds", is_flag=True,
              help="face SEED as NVlabs' scripts draw it (np.random.RandomState(seed).randn(1, z_dim))")
@click.option("--device", default="auto", show_default=True)
@click.option("--knobs-dir", default=None, help=KNOBS_DIR_HELP)
@click.option("--library/--no-library", default=True, show_default=True, help="add the knob library's taught knobs")
def strip(axis: str, axes: str | None, generator: str | None, seed: int, locks: tuple[str, ...], span: float,
          steps: int, size: int, out: str, exact: bool, extractor: str | None, layers: str | None, nvlabs_seeds: bool,
          device: str, knobs_dir: str | None, library: bool) -> None:
    """A row of images of face SEED with knob AXIS set from −RANGE to +RANGE σ (--exact: its reading)."""
    from tlgan.editing.editor import Editor
    from tlgan.imaging import grid, save_image

    gen, axis_set = load_model(generator, axes, device, knobs_dir, library)
    axis_set.index(axis)
    ext = None
    if exact:
        from tlgan.models.extractors import load_extractor

        ext = load_extractor(extractor or axis_set.extractor_spec(), device)
    images, watch = [], None
    for i in range(steps):
        editor = Editor(gen, axis_set, seed, layers=layers, seeds="nvlabs" if nvlabs_seeds else "tlgan", extractor=ext,
                        exact=exact, identity=watch)
        editor.set_locks(locks)
        if "identity" in locks:
            watch = editor.identity_watch  # one identity network for the whole strip
        editor.set(axis, -span + 2 * span * i / (steps - 1))
        _warn_exact(editor)
        images.append(editor.render())
    save_image(grid(images, size=size), out)
    click.echo(f"wrote {out}", err=True)


@click.command("exact-stats")
@click.argument("axes", type=click.Path(dir_okay=False, exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="write here [default: update AXES]")
@click.option("--n", "n", type=click.IntRange(100, 1 << 22), default=4096, show_default=True,
              help="faces to sample")
@click.option("--seed", type=int, default=271828, show_default=True)
@click.option("--generator", default=None, help="generator spec [default: digiface]")
@click.option("--extractor", default=None, help="extractors [default: the axes' own]")
@click.option("--device", default="auto", show_default=True)
def exact_stats(axes: str, out: str | None, n: int, seed: int, generator: str | None, extractor: str | None,
                device: str) -> None:
    """Store each knob's reading mean and spread over N sampled faces in AXES (what exact mode's values are in).

    \b
    Example:
      tlgan exact-stats my-axes.safetensors --n 4096
    Axis sets without them get them derived (same numbers) whenever exact mode starts; storing them saves that time.
    """
    from tlgan.editing.exact import with_reading_stats
    from tlgan.models.extractors import load_extractor

    gen, axis_set = load_model(generator, axes, device)
    ext = load_extractor(extractor or axis_set.extractor_spec(), device)
    updated = with_reading_stats(axis_set, gen, ext, n=n, seed=seed)
    updated.save(out or axes)
    click.echo(f"wrote {out or axes}", err=True)
