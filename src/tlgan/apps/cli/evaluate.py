"""CLI commands for evaluation and the methods beyond least squares: evaluate, discover, rename, teach.

Plain click commands, attached to the ``tlgan`` group in cli.py; each is a
thin layer over tlgan.evaluate, tlgan.report, tlgan.methods and tlgan.axisops.
"""

from __future__ import annotations

import json

import click

from tlgan.errors import TlganError

from .common import ray_options


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
@click.option("--exact", is_flag=True,
              help="move faces along exact paths (offsets in SD of each knob's reading; locks hold readings); slow")
@click.option("--hold-identity", is_flag=True,
              help="with --exact: every move also holds the face's identity (as `tlgan edit --exact --lock identity`: "
                   "the descriptor distance from the start face stays within 0.1); nothing else is held")
@click.option("--identity/--no-identity", "with_identity", default=None,
              help="also measure identity drift per σ (dlib's face descriptor) [default: on for generators of 64 px "
                   "or more when the identity weights are installed]")
@click.option("--identity-faces", type=click.IntRange(1, 1 << 16), default=16, show_default=True,
              help="faces (the first of --n) read for identity: K axes × this × (steps − 1) readings, twice with locking")
@ray_options
def evaluate(axes: str | None, n: int, seed: int | None, span: float, steps: int, no_locked: bool, json_out: str | None,
             report_dir: str | None, generator: str | None, extractor: str | None, device: str,
             batch_size: int, exact: bool, hold_identity: bool, with_identity: bool | None, identity_faces: int,
             ray_address: str | None,
             ray_workers: int | None, ray_ship: bool) -> None:
    """Measure every axis of AXES (default: the shipped set) on fresh faces: fit quality, re-scoring matrix (free
    and locked), monotonicity, faces kept, cosine similarity, and identity drift per σ (distance of the moved face's
    identity descriptor from the unmoved face's, on the first --identity-faces faces).

    \b
    Example:
      tlgan evaluate my-axes.safetensors --n 500 --json eval.json --report eval-report/
      tlgan evaluate my-axes.safetensors --n 5000 --json eval.json --ray HEAD:6379
      tlgan evaluate --exact --n 32 --range 2 --steps 5 --json exact.json
      tlgan evaluate --exact --hold-identity --n 4 --range 1 --steps 3 --no-locked --json held.json
    The JSON format is documented in docs/evaluate.md.
    """
    from tlgan.evaluation.evaluate import DEFAULT_SEED
    from tlgan.evaluation.evaluate import evaluate as run_evaluation
    from tlgan.evaluation.report import write_report
    from tlgan.models.extractors import load_extractor
    from tlgan.sampling.pipeline import set_cpu_threads

    from .common import load_model

    if not json_out and not report_dir:
        raise TlganError("nothing to write: give --json FILE and/or --report DIR")
    if hold_identity and not exact:
        raise TlganError("--hold-identity holds identity on exact paths: add --exact")
    if hold_identity and with_identity is False:
        raise TlganError("--hold-identity needs the identity model: drop --no-identity")
    set_cpu_threads()
    offsets = sorted({round(-span + 2 * span * i / (steps - 1), 6) for i in range(steps)} | {0.0})
    seed = DEFAULT_SEED if seed is None else seed
    if ray_address:
        if exact:
            raise TlganError("--exact runs on this machine; drop --ray")
        result = _evaluate_on_ray(ray_address, ray_workers, ray_ship, generator, axes, extractor, device, n, seed,
                                  offsets, not no_locked, batch_size, with_identity, identity_faces)
    else:
        gen, axis_set = load_model(generator, axes, device)
        ext = load_extractor(extractor or axis_set.extractor_spec(), device)
        sweeper = None
        ident = identity_model(True if hold_identity else with_identity, gen, device, axis_set,
                               min(n, identity_faces), len(offsets), not no_locked)
        if exact:
            from tlgan.editing.exact import ExactSweeper
            from tlgan.editing.identity import IdentityWatch

            watch = IdentityWatch(gen, ident) if hold_identity else None
            sweeper = ExactSweeper(gen, ext, axis_set, progress=True, identity=watch)
        result = run_evaluation(gen, ext, axis_set, n=n, seed=seed, sweep=offsets, locked=not no_locked,
                                batch_size=batch_size, exact=sweeper, identity=ident, identity_faces=identity_faces)
    if json_out:
        from tlgan.atomic import write_text_atomic

        write_text_atomic(json_out, json.dumps(result.to_dict(), indent=1, allow_nan=False))
        click.echo(f"wrote {json_out}", err=True)
    if report_dir:
        click.echo(f"wrote {write_report(result, report_dir)}", err=True)
    click.echo(format_summary(result.to_dict()))


def identity_model(wanted: bool | None, gen, device: str, axis_set, faces: int, steps: int, locked: bool):
    """The identity model for ``--identity`` (None for ``--no-identity``); by default only for generators of 64 px
    or more, and only when its weights are installed. Says on stderr how many readings it adds."""
    from tlgan.devices import resolve_device
    from tlgan.models.extractors.identity import load_identity

    if wanted is False or (wanted is None and getattr(gen, "resolution", 0) < 64):
        return None
    try:
        model = load_identity(resolve_device(device))
    except TlganError as error:
        if wanted:
            raise
        click.echo(f"identity not measured: {error}", err=True)
        return None
    reads = len(axis_set.names) * faces * (steps - 1) * (2 if locked else 1) + faces
    click.echo(f"identity: about {reads:,} extra readings ({faces} faces; --no-identity skips them)", err=True)
    return model


def _evaluate_on_ray(address: str, workers: int | None, ship: bool, generator: str | None, axes: str | None,
                     extractor: str | None, device: str, n: int, seed: int, offsets: list[float], locked: bool,
                     batch_size: int, with_identity: bool | None = None, identity_faces: int = 16):
    """``tlgan evaluate --ray``: the moved faces are rendered and read by a Ray cluster's workers; the driver
    keeps a CPU copy of the generator for the strips, the identity readings and the arithmetic."""
    from tlgan.axes.defaults import DEFAULT_GENERATOR
    from tlgan.evaluation.evaluate import evaluate as run_evaluation
    from tlgan.models.extractors import load_extractor
    from tlgan.sampling.distributed import Cluster, WorkerPool

    from .common import absolute_spec, load_model

    gen, axis_set = load_model(generator, axes, "cpu")
    spec = extractor or axis_set.extractor_spec()
    ext = load_extractor(spec, "cpu")
    ident = identity_model(with_identity, gen, "cpu", axis_set, min(n, identity_faces), len(offsets), locked)
    with Cluster(address, ship_code=ship) as cluster:
        with WorkerPool(cluster, absolute_spec(generator or DEFAULT_GENERATOR), absolute_spec(spec), device,
                        workers=workers) as pool:
            if pool.info["generator"] != gen.identity or pool.info["extractor"] != ext.identity:
                raise TlganError(f"the Ray workers loaded {pool.info['generator']} + {pool.info['extractor']}, "
                                 f"the driver {gen.identity} + {ext.identity}: the same files must be on every node")
            click.echo(f"evaluating on {len(pool.actors)} Ray worker(s) ({pool.device}) at {address}", err=True)
            return run_evaluation(gen, ext, axis_set, n=n, seed=seed, sweep=offsets, locked=locked,
                                  batch_size=batch_size, reader=lambda z: pool.read_faces(z, batch_size, True),
                                  identity=ident, identity_faces=identity_faces)


def format_summary(data: dict) -> str:
    """A terminal table of an evaluation's per-axis numbers."""
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:+.2f}"

    ident = bool((data.get("settings") or {}).get("identity"))

    def g(entry: dict | None) -> str:
        v = (entry or {}).get("identity") or {}
        return "-" if v.get("per_sigma") is None else f"{v['per_sigma']:.3f}"

    lines = [f"{'axis':<22}{'fit':>8}{'diag':>8}{'worst leak':>26}{'mono':>7}{'faces':>7}{'locked diag':>13}"
             + (f"{'reach':>7}{'locked reach':>14}" if data.get("mode") == "exact" else "")
             + (f"{'id/σ':>7}{'locked id/σ':>13}" if ident else "")]
    for a in data["axes"]:
        q = a["fit_quality"]["fresh"]
        leak = a["worst_leak"]
        leak_s = f"{leak['feature'][:16]} {leak['effect']:+.2f}" if leak else "-"
        locked = a["locked"] or {}
        lines.append(f"{a['name']:<22}{'-' if q is None else f'{q:.2f}':>8}{f(a['diagonal']):>8}{leak_s:>26}"
                     f"{'-' if a['monotonicity'] is None else format(a['monotonicity'], '.2f'):>7}"
                     f"{'-' if a['faces_kept'] is None else format(a['faces_kept'], '.2f'):>7}"
                     f"{f(locked.get('diagonal')):>13}"
                     + (f"{f(a.get('reachable')):>7}{f(locked.get('reachable')):>14}" if data.get("mode") == "exact" else "")
                     + (f"{g(a):>7}{g(locked):>13}" if ident else ""))
    if ident:
        s = data["settings"]["identity"]
        lines.append(f"id/σ: identity-descriptor distance from the unmoved face per σ moved, mean over the first "
                     f"{s['faces']} faces (dlib: under 0.6 = same person; faces not found left out, "
                     f"{s['start_not_found']} unmoved)")
    return "\n".join(lines)
