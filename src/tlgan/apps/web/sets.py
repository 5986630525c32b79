"""Several knob sets of one generator in one app: the first at /, the others at /sets/NAME/."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Sequence

from fastapi import FastAPI

from tlgan.axes.store import AxisSet
from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator

from .app import create_app
from .renderer import BatchRenderer
from .work import WorkPool


def create_multi_app(generator: Generator, sets: Sequence[tuple[str, AxisSet]], extractor: Extractor | None,
                     **options: Any) -> FastAPI:
    """One app for several knob sets of one generator: the first at /, the others at /sets/NAME/.

    Every page lists the sets (``sets`` in GET /api/model) and switches between them, keeping the
    seed and what of the edits the other set knows. The sets share one renderer and one work pool.
    ``options`` go to create_app for every set.
    """
    names = [name for name, _ in sets]
    if not sets:
        raise TlganError("no knob sets to serve")
    if len(set(names)) != len(names):
        raise TlganError(f"knob sets need different names, got {', '.join(names)}")
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
            raise TlganError(f"knob set name '{name}' must be letters, digits, '.', '_' or '-'")
    shared = (BatchRenderer(generator, extractor, max_batch=options.pop("max_batch", 64)),
              WorkPool(options.pop("workers", 2), options.pop("max_pending", None)), {"local_only": True})
    urls = ["/"] + [f"/sets/{name}/" for name in names[1:]]
    listing = [{"name": name, "url": url} for name, url in zip(names, urls)]
    apps = []
    for name, axes in sets:
        app = create_app(generator, axes, extractor, shared=shared, **options)
        app.state.tlgan.info.update(sets=listing, set=name)
        apps.append(app)
    root = apps[0]
    for (name, _), app in zip(sets[1:], apps[1:]):
        root.mount(f"/sets/{name}", app, name=f"set:{name}")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        shared[0].close()
        shared[1].close()

    root.router.lifespan_context = lifespan
    return root
