"""``tlgan serve``: the web app on the default model or your own axis set (the lead attaches it to the CLI group)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import AXES_HELP, KNOBS_DIR_HELP, teacher_option


@click.command("serve")
@click.option("--axes", type=click.Path(dir_okay=False), multiple=True,
              help=AXES_HELP + "; give it several times to serve several knob sets, switchable in the page")
@click.option("--generator", default=None, help="generator spec [default: digiface]")
@click.option("--extractor", default=None,
              help="extractors for the live readings, comma-separated, or 'none' "
                   "[default: the axis set's own, else emotion,landmarks,imagestats,facelight,agegender]")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; 0.0.0.0 lets other machines reach the app")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0 picks a free port")
@click.option("--open/--no-open", "open_browser", default=False, show_default=True, help="open the page in a browser")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("--assets", "assets_dir", type=click.Path(file_okay=False), default=None,
              help="a folder with the original TL-GAN layout (asset_model/, asset_results/): serve its PG-GAN "
                   "with the original knobs")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="an evaluation report folder (tlgan evaluate --report DIR) to link from the page")
@click.option("--leaks/--no-leaks", default=True, show_default=True,
              help="measure once (in the background, cached on disk) what else each knob moves, and show it")
@click.option("--knobs-dir", default=None, help=KNOBS_DIR_HELP + "; knobs taught in the page are saved there")
@teacher_option("knobs taught in the page are")
def serve_command(axes: tuple[str, ...], generator: str | None, extractor: str | None, host: str, port: int,
                  open_browser: bool, device: str, assets_dir: str | None, report_dir: str | None,
                  leaks: bool, knobs_dir: str | None, teacher: str) -> None:
    """Serve the web app: a face, one knob per feature, locks, undo, share links.

    \b
    Examples:
      tlgan serve                         # http://127.0.0.1:8000, default model
      tlgan serve --open --port 8080
      tlgan serve --axes my-axes.safetensors --extractor none
      tlgan serve --axes faces.safetensors --axes lighting.safetensors   # two knob sets
      tlgan serve --host 0.0.0.0          # reachable from your network (no authentication!)
      tlgan serve --assets ~/transparent_latent_gan   # the original TL-GAN assets and knobs
    """
    from tlgan.apps.web.app import bind, create_app, serve
    from tlgan.apps.web.sets import create_multi_app
    from tlgan.apps.web.leaks import default_cache_dir
    from tlgan.axes.defaults import (
        DEFAULT_EXTRACTORS,
        DEFAULT_GENERATOR,
        load_default_axes,
    )
    from tlgan.axes.original import find_original_assets
    from tlgan.axes.store import load_axes
    from tlgan.editing.library import KnobLibrary
    from tlgan.errors import TlganError
    from tlgan.models.extractors import load_extractor
    from tlgan.models.generators import load_generator
    from tlgan.sampling.pipeline import set_cpu_threads

    bind(host, port).close()  # fail fast on a busy port, before loading models
    set_cpu_threads()
    extras = {"report": report_dir, "leaks_cache": default_cache_dir() if leaks else None,
              "library": KnobLibrary(knobs_dir), "teacher": teacher}
    if assets_dir:
        if axes or generator:
            raise TlganError("--assets brings its own generator and axes; drop --axes/--generator")
        original = find_original_assets(assets_dir)
        gen = load_generator(original.generator_spec, device)
        spec = extractor or original.extractor_spec or "none"
        ext = None if spec.strip().lower() == "none" else load_extractor(spec, device)
        app = create_app(gen, original.axis_set(gen.identity), ext, default_view=original.default_knobs,
                         display={"title": "TL-GAN (original assets)"}, **extras)
        _say_notes(app)
        serve(app, host=host, port=port, open_browser=open_browser)
        return
    sets = [(Path(a).stem, load_axes(a)) for a in axes] if axes else [("default", load_default_axes())]
    axis_set = sets[0][1]
    gen = load_generator(generator or DEFAULT_GENERATOR, device)
    for _, one in sets:
        one.check_generator(gen)
    if extractor is None:
        extractor = axis_set.extractor_spec() if axis_set.extractor else DEFAULT_EXTRACTORS
    ext = None if extractor.strip().lower() == "none" else load_extractor(extractor, device)
    app = create_app(gen, axis_set, ext, **extras) if len(sets) == 1 else create_multi_app(gen, sets, ext, **extras)
    _say_notes(app)
    serve(app, host=host, port=port, open_browser=open_browser)


def _say_notes(app: object) -> None:
    """Say which library knob files were skipped (another generator, a clashing name) and why."""
    for note in app.state.knobs.notes:  # type: ignore[attr-defined]
        click.echo(f"tlgan: {note}", err=True)
