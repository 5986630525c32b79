"""The command line (``tlgan``): one module per command group, one entry point (``main``)."""

from .main import cli, main

__all__ = ["cli", "main"]
