"""The evaluation report folder: heatmaps (matplotlib, Agg), one strip per axis, an index.html, the JSON.

Layout of DIR:
  index.html                  summary table, heatmaps and strips
  evaluation.json             the same JSON as ``tlgan evaluate --json``
  rescoring.png               re-scoring matrix, axes × features
  rescoring_locked.png        the same with the other supervised axes locked (if measured)
  cosine.png                  cosine similarity between axes
  strips/<NN>-<axis>.png      fresh faces along the axis (free rows, then locked rows)
Every file is written atomically.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import torch

from tlgan.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from tlgan.imaging import grid

from .evaluate import Evaluation


def heatmap_png(values: torch.Tensor, rows: Sequence[str], columns: Sequence[str], title: str,
                diagonal: Sequence[int | None] | None = None, limit: float | None = None) -> bytes:
    """PNG bytes of a diverging heatmap of ``values`` (R, C) (NaN grey), cells annotated when the matrix is small.

    ``diagonal[r]`` marks the column of row r's own feature with a box.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    data = values.to(torch.float64).numpy()
    finite = np.abs(data[np.isfinite(data)])
    vmax = limit or (float(np.percentile(finite, 99)) if finite.size else 1.0) or 1.0
    r, c = data.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.42 * c + 2.5), max(3.0, 0.36 * r + 1.6)), dpi=110)
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#cccccc")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(c), labels=list(columns), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(r), labels=list(rows), fontsize=8)
    ax.set_title(title, fontsize=10)
    if r * c <= 900:
        for i in range(r):
            for j in range(c):
                if math.isfinite(data[i, j]):
                    ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if abs(data[i, j]) > 0.6 * vmax else "black")
    for i, j in enumerate(diagonal or []):
        if j is not None:
            ax.add_patch(matplotlib.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5, ec="black"))
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "axis"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _effect(entry: dict[str, Any] | None) -> str:
    return "–" if not entry else f"{html.escape(entry['feature'])} {entry['effect']:+.2f}"


def _identity(entry: dict[str, Any] | None) -> str:
    """'per σ (at the largest |t|)' of an identity reading, e.g. '0.21 (0.55 at ±3)'."""
    if not entry or entry.get("per_sigma") is None:
        return "–"
    last = next((b for b in reversed(entry["by_size"]) if b["distance"] is not None), None)
    return _fmt(entry["per_sigma"], 3) + (f" ({_fmt(last['distance'])} at ±{last['size']:g})" if last else "")


def _identity_note(ident: dict[str, Any] | None) -> str:
    if not ident:
        return ""
    return (f" <em>identity / σ</em>: mean over the first {ident['faces']} faces of the identity-descriptor distance "
            f"between the moved and the unmoved face, divided by |offset| (model <code>{html.escape(ident['model'])}"
            "</code>; dlib calls faces under 0.6 apart the same person), with the mean distance at the largest "
            f"offset; faces whose landmarks were not found are left out ({ident['start_not_found']} unmoved).")


def write_report(evaluation: Evaluation, folder: str | Path, size: int = 96) -> Path:
    """Write the report folder (see module docstring); returns the path of index.html."""
    folder = Path(folder)
    data = evaluation.to_dict()
    feats = evaluation.features
    diag = [feats.index(a["target"]) if a["target"] in feats else None for a in data["axes"]]
    sweep = data["settings"]["sweep"]
    write_text_atomic(folder / "evaluation.json", json.dumps(data, indent=1, allow_nan=False))
    pictures = [("rescoring.png", "Re-scoring matrix: feature SDs per σ of each knob", evaluation.matrix)]
    if evaluation.matrix_locked is not None:
        mode = "conditioned (InterFaceGAN)" if data["settings"]["lock_mode"] == "condition" else "locked (TL-GAN)"
        pictures.append(("rescoring_locked.png", f"Re-scoring with the other supervised axes {mode}",
                         evaluation.matrix_locked))
    shared = max([float(torch.nan_to_num(m.abs(), nan=0).max()) for _, _, m in pictures] + [1e-6])
    for file, title, matrix in pictures:
        write_bytes_atomic(folder / file, heatmap_png(matrix, evaluation.axis_names, feats, title, diag,
                                                      limit=min(shared, 2.0)))
    write_bytes_atomic(folder / "cosine.png", heatmap_png(evaluation.cosine, evaluation.axis_names,
                                                          evaluation.axis_names, "Cosine similarity between axes",
                                                          limit=1.0))
    strip_files: dict[str, str] = {}
    for k, name in enumerate(evaluation.axis_names):
        rows = evaluation.strips.get(name)
        if not rows:
            continue
        images = [im for row in rows for im in row]
        rel = f"strips/{k:02d}-{_slug(name)}.png"
        with atomic_path(folder / rel) as tmp:
            grid(images, columns=len(sweep), size=size).save(tmp, "PNG")
        strip_files[name] = rel
    index = folder / "index.html"
    write_text_atomic(index, _html(data, pictures, strip_files))
    return index


def _html(data: dict[str, Any], pictures: list[tuple[str, str, Any]], strips: dict[str, str]) -> str:
    s = data["settings"]
    locked = data["rescoring_locked"] is not None
    ident = s.get("identity")
    head = ["axis", "target", "fit (fresh)", "fit (at fitting)", "diagonal", "worst leak", "moves most",
            "monotonic", "faces kept"] + (["identity / σ"] if ident else []) \
        + (["locked: gain", "diagonal", "worst leak", "faces kept"] if locked else []) \
        + (["locked: identity / σ"] if ident and locked else [])
    body = []
    for a in data["axes"]:
        q = a["fit_quality"]
        metric = html.escape(q["metric"] or "")
        cells = [html.escape(a["name"]), html.escape(a["target"] or "–"), f"{metric} {_fmt(q['fresh'])}" if q["fresh"] is not None else "–",
                 f"{metric} {_fmt(q['stored'])}" if q["stored"] is not None else "–", _fmt(a["diagonal"]),
                 _effect(a["worst_leak"]), _effect(a["moves_most"]), _fmt(a["monotonicity"]), _fmt(a["faces_kept"])]
        if ident:
            cells.append(_identity(a.get("identity")))
        if locked:
            lk = a["locked"] or {}
            cells += [_fmt(lk.get("gain")), _fmt(lk.get("diagonal")), _effect(lk.get("worst_leak")),
                      _fmt(lk.get("faces_kept"))]
            if ident:
                cells.append(_identity(lk.get("identity")))
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")  # cells are escaped already
    summary = json.dumps(data["summary"], indent=1)
    strip_html = "".join(
        f'<figure><img src="{html.escape(path)}" alt="{html.escape(name)}"><figcaption>{html.escape(name)}: '
        f'offsets {", ".join(f"{t:+g}" for t in s["sweep"])} σ; first rows free'
        f'{", then locked" if locked else ""}</figcaption></figure>'
        for name, path in strips.items())
    images = "".join(f'<figure><img src="{f}" alt="{html.escape(t)}"><figcaption>{html.escape(t)}</figcaption></figure>'
                     for f, t, _ in pictures)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tlgan evaluation: {html.escape(data['method'])}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; }} td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
th {{ background: #f2f2f2; }} figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
img {{ max-width: 100%; image-rendering: pixelated; }} pre {{ background: #f7f7f7; padding: 0.5em; }}
</style></head><body>
<h1>Evaluation of a {html.escape(data['method'])} axis set</h1>
<p>Generator <code>{html.escape(data['generator'])}</code>; extractor <code>{html.escape(data['extractor'])}</code>;
{s['n']} fresh faces (evaluation seed {s['seed']}), each moved by {", ".join(f"{t:+g}" for t in s['sweep'])} σ
along every axis{"; locked = the other supervised axes " + ("conditioned on" if s['lock_mode'] == 'condition' else "locked")
if locked else ""}. Effects are in feature standard deviations per σ of the knob. The numbers are in
<a href="evaluation.json">evaluation.json</a> (format: docs/evaluate.md).{_identity_note(ident)}</p>
<h2>Per axis</h2>
<table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>
{"".join(body)}</table>
<h2>Summary</h2><pre>{html.escape(summary)}</pre>
<h2>Matrices</h2>{images}<figure><img src="cosine.png" alt="cosine"><figcaption>Cosine similarity</figcaption></figure>
<h2>Strips</h2>{strip_html or "<p>(none)</p>"}
</body></html>
"""
