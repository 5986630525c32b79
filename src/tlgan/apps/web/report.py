"""An evaluation report folder (``tlgan evaluate --report``) served by the web app under /report/.

Its files are read once, at start-up, and served by exact name: no request names a path.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

from tlgan.errors import TlganError

REPORT_TYPES = {".html": "text/html; charset=utf-8", ".png": "image/png", ".json": "application/json",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
MAX_REPORT_BYTES = 64 * 1024 * 1024


def read_report(folder: str | Path) -> dict[str, tuple[bytes, str]]:
    """An evaluation report's files (top level, known types), read once: {name: (bytes, media type)}."""
    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise TlganError(f"'{folder}' is not an evaluation report folder (no index.html); write one with "
                         "tlgan evaluate --report FOLDER")
    files, total = {}, 0
    for path in sorted(folder.iterdir()):
        kind = REPORT_TYPES.get(path.suffix.lower())
        if kind and path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            total += len(data)
            if total > MAX_REPORT_BYTES:
                raise TlganError(f"the report in '{folder}' is over {MAX_REPORT_BYTES >> 20} MiB")
            files[path.name] = (data, kind)
    return files


def report_route(app: FastAPI, name: str, data: bytes, kind: str) -> None:
    async def serve_file() -> Response:
        return Response(data, media_type=kind, headers={"Cache-Control": "no-cache"})
    app.add_api_route(f"/report/{name}", serve_file, methods=["GET"], include_in_schema=False, name=f"report:{name}")
