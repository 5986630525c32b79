"""tlgan rename and teach: rename axes and add knobs taught from labels."""

from __future__ import annotations

import click

from tlgan.errors import TlganError


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
    from tlgan.axes.defaults import load_default_axes
    from tlgan.axes.store import load_axes
    from tlgan.editing.teach import read_labels
    from tlgan.editing.teach import teach as add_taught

    if axes is None and out is None:
        raise TlganError("give --out FILE: the shipped axis set is not overwritten")
    axis_set = load_axes(axes) if axes else load_default_axes()
    if samples is not None:
        from tlgan.sampling.pipeline import read_manifest

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
