"""The command line (``tlgan``): one module per command group, the group in ``commands``, the entry in ``main``.

``main`` is light (it installs signal handlers before anything heavy is imported); ``cli``, the click group,
is imported on first use.
"""

from typing import Any

from .main import main

__all__ = ["cli", "main"]


def __getattr__(name: str) -> Any:
    if name == "cli":
        from .commands import cli

        return cli
    raise AttributeError(name)
