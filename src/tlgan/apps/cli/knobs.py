"""tlgan rename and teach: rename axes and add knobs taught from labels."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from tlgan.errors import TlganError

from .common import KNOBS_DIR_HELP, teacher_option


@click.command()
@click.argument("axes", type=click.Path(dir_okay=False, exists=False))
@click.argument("renames", nargs=-1, metavar="OLD=NEW...")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="write here [default: overwrite AXES]")
def rename(axes: str, renames: tuple[str, ...], out: str | None) -> None:
    """Rename axes of an axis set, e.g. tlgan rename sefa.safetensors sefa_0=head_turn sefa_2=light."""
    from tlgan.axes.ops import parse_renames, rename_axes
    from tlgan.axes.store import load_axes

    axis_set = rename_axes(load_axes(axes), parse_renames(renames))
    axis_set.save(out or axes)
    click.echo(f"wrote {out or axes}: {', '.join(axis_set.names)}", err=True)


def _aid(view: Any, teacher: str) -> dict[str, Any]:
    """``scale``/``looks`` keyword arguments for the teacher (``tlgan.editing.library.teaching_aid``)."""
    from tlgan.editing.library import teaching_aid

    scale, looks = teaching_aid(view, teacher) if view is not None else (None, None)
    return {"scale": scale, "looks": looks}


@click.command()
@click.argument("name")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False), required=True,
              help="CSV with a header: seed,label (or index,label with --samples); labels are 0 or 1")
@click.option("--axes", type=click.Path(dir_okay=False), default=None,
              help="axis set to add the knob to [default: the shipped set]")
@click.option("--samples", type=click.Path(file_okay=False), default=None,
              help="sample folder whose faces an 'index' column numbers")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="where to write the new set [default: overwrite --axes; with neither: the knob library]")
@click.option("--group", default="other", show_default=True, help="where the web app shows the knob")
@click.option("--C", "c", type=float, default=1.0, show_default=True, help="inverse L2 penalty of the regression")
@click.option("--replace", "replace_existing", is_flag=True, help="overwrite an existing axis called NAME")
@click.option("--knobs-dir", default=None, help=KNOBS_DIR_HELP)
@teacher_option("the knob is")
@click.option("--generator", default=None, help="generator spec, for --teacher looks/sensitivity [default: digiface]")
@click.option("--device", default="cpu", show_default=True, help="where the generator runs: cpu, cuda, cuda:N")
def teach(name: str, labels_file: str, axes: str | None, samples: str | None, out: str | None, group: str, c: float,
          replace_existing: bool, knobs_dir: str | None, teacher: str, generator: str | None, device: str) -> None:
    """Make a knob NAME from a few dozen yes/no labels of faces (e.g. glasses, hats) and add it to an axis set.

    \b
    Example (label faces you looked at with `tlgan edit --seed S --out face.png`):
      printf 'seed,label\\n3,1\\n8,0\\n...' > glasses.csv
      tlgan teach glasses --labels glasses.csv --axes my-axes.safetensors
      tlgan teach glasses --labels glasses.csv      # into the knob library (tlgan knobs list)
    At least 20 labelled faces, with at least 5 of each label.
    """
    from tlgan.axes.defaults import load_default_axes
    from tlgan.axes.store import load_axes
    from tlgan.editing.teach import read_labels
    from tlgan.editing.teach import teach as add_taught
    from tlgan.sampling.spaces import seed_latents

    axis_set = load_axes(axes) if axes else load_default_axes()

    def view() -> Any:
        """The generator seen in the axes' space: for the teacher, and for seeds in a StyleGAN's w (None when
        neither needs it). Loaded after the labels are checked."""
        if teacher == "plain" and axis_set.latent_space == "z":
            return None
        from tlgan.axes.spaces import match_space

        from .common import load_model

        try:
            gen, _ = load_model(generator, axes, device, library=False)
        except TlganError as exc:
            if generator:
                raise
            raise TlganError(f"{exc}; give --generator SPEC (the axes' generator), or --teacher plain") from None
        return match_space(gen, axis_set)[0]

    if axes is None and out is None:  # the shipped set is never overwritten: the knob goes to the library
        from tlgan.editing.library import KnobLibrary, make_knob

        if samples is not None:
            raise TlganError("library knobs are taught from seeds: drop --samples, or give --axes/--out")
        if name in axis_set.names:
            raise TlganError(f"'{name}' is a built-in knob; choose another name")
        labels = read_labels(labels_file, name, axis_set.latent_dim)
        gen = view()
        knob = make_knob(name, list(zip(labels.ids, labels.y.tolist())), axis_set.generator, axis_set.latent_dim,
                         c=c, source=labels.source, generator=gen, **_aid(gen, teacher))
        library = KnobLibrary(knobs_dir)
        path = library.save(knob, replace_existing)
        cv = knob.quality[name]["accuracy"]
        click.echo(f"wrote {path}: knob '{name}' from {len(labels.ids)} labels, cross-validated accuracy {cv:.2f}")
        return
    if samples is not None:
        from tlgan.sampling.pipeline import read_manifest

        manifest = read_manifest(samples)
        if axis_set.generator and manifest.generator != axis_set.generator:
            raise TlganError(f"{samples} holds faces of generator '{manifest.generator}', "
                             f"the axis set is for '{axis_set.generator}'")
    labels = read_labels(labels_file, name, axis_set.latent_dim, samples)
    gen = view()
    if gen is not None and samples is None:  # seeds name faces in the generator's space
        labels = replace(labels, z=seed_latents(labels.ids, axis_set.latent_dim, gen))
    new = add_taught(axis_set, name, labels, c=c, group=group, replace_existing=replace_existing,
                     samples=str(samples) if samples else None, generator=gen, **_aid(gen, teacher))
    target = out or axes
    new.save(target)
    record = new.params["taught"][name]
    click.echo(f"wrote {target}: axis '{name}' from {record['labels']} labels ({record['positives']} yes), "
               f"{record['folds']}-fold cross-validated accuracy {record['cv_accuracy']:.2f}")


@click.group("knobs")
def knobs() -> None:
    """The knob library: knobs taught in the web app (or with tlgan teach), kept per user.

    \b
    Examples:
      tlgan knobs list
      tlgan knobs export glasses glasses.safetensors      # a file to give to someone
      tlgan knobs import glasses.safetensors --name specs  # ... who adds it to their library
      tlgan knobs remove specs
    tlgan serve, edit and strip use the library's knobs for their generator.
    """


@knobs.command("list")
@click.option("--knobs-dir", default=None, help=KNOBS_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
def list_knobs(knobs_dir: str | None, as_json: bool) -> None:
    """List the library's knobs: name, generator, labels and cross-validated accuracy."""
    import json

    from tlgan.editing.library import KnobLibrary, knob_record

    library = KnobLibrary(knobs_dir)
    rows = []
    for name in library.names():
        try:
            knob = library.load(name)
        except TlganError as exc:
            rows.append({"name": name, "error": str(exc)})
            continue
        record = knob_record(knob)
        rows.append({"name": name, "generator": knob.generator, "labels": record.get("labels"),
                     "positives": record.get("positives"), "cv_accuracy": knob.quality.get(name, {}).get("accuracy")})
    if as_json:
        click.echo(json.dumps({"library": str(library.folder), "knobs": rows}, indent=2))
        return
    click.echo(f"library {library.folder}", err=True)
    if not rows:
        click.echo("no taught knobs yet: teach one in tlgan serve (New knob) or with tlgan teach", err=True)
    for row in rows:
        if "error" in row:
            click.echo(f"{row['name']:<24}unreadable: {row['error']}")
            continue
        labels = "-" if row["labels"] is None else f"{row['labels']} labels ({row['positives']} yes)"
        acc = "-" if row["cv_accuracy"] is None else f"cv acc {row['cv_accuracy']:.2f}"
        click.echo(f"{row['name']:<24}{row['generator']:<30}{labels:<24}{acc}")


@knobs.command("export")
@click.argument("name")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--knobs-dir", default=None, help=KNOBS_DIR_HELP)
def export_knob(name: str, out: str, knobs_dir: str | None) -> None:
    """Write library knob NAME (with its labels) to the axis-set file OUT."""
    from tlgan.editing.library import KnobLibrary

    KnobLibrary(knobs_dir).export(name, out)
    click.echo(f"wrote {out}", err=True)


@knobs.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--axis", default=None, help="the axis to take when FILE holds several")
@click.option("--name", default=None, help="name it this in the library [default: its own]")
@click.option("--replace", "replace_existing", is_flag=True, help="overwrite a library knob of that name")
@click.option("--knobs-dir", default=None, help=KNOBS_DIR_HELP)
def import_knob(file: str, axis: str | None, name: str | None, replace_existing: bool, knobs_dir: str | None) -> None:
    """Add a knob file (from tlgan knobs export, or one axis of any axis set) to the library."""
    from tlgan.editing.library import KnobLibrary

    library = KnobLibrary(knobs_dir)
    knob = library.import_file(file, axis, name, replace_existing)
    click.echo(f"added '{knob.names[0]}' (generator {knob.generator}) to {library.folder}", err=True)


@knobs.command("remove")
@click.argument("name")
@click.option("--knobs-dir", default=None, help=KNOBS_DIR_HELP)
def remove_knob(name: str, knobs_dir: str | None) -> None:
    """Delete library knob NAME."""
    from tlgan.editing.library import KnobLibrary

    path = KnobLibrary(knobs_dir).remove(name)
    click.echo(f"removed {path}", err=True)
