"""The web app: ``create_app(generator, axes, extractor)`` builds it, ``serve(app)`` runs it (``tlgan serve``)."""

from .app import create_app, serve
from .sets import create_multi_app

__all__ = ["create_app", "create_multi_app", "serve"]
