"""Where tlgan keeps small files it derives once and reuses (priors, identity stats, face layouts, looks)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TLGAN_CACHE_DIR"


def cache_dir() -> Path:
    """$TLGAN_CACHE_DIR, else the user's cache folder for tlgan ($XDG_CACHE_HOME/tlgan or ~/.cache/tlgan on Linux)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("tlgan", appauthor=False))
