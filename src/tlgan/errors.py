"""The one exception type that front ends turn into a one-line message, and helpers that word I/O failures."""

from __future__ import annotations

import os
import re
from pathlib import Path


class TlganError(Exception):
    """A problem the user can fix (bad input, missing file, mismatched model).

    The CLI prints ``str(error)`` on one line and exits non-zero; the web app
    answers 422 with it. Anything else escaping is a bug in tlgan.
    """


class OutputError(TlganError, OSError):
    """Writing an output failed (read-only folder, full disk, a parent path that is a file, ...).

    ``str()`` is ``cannot write PATH: reason``; ``filename`` is PATH and ``errno`` the OS error number when known.
    """

    def __init__(self, path: str | Path, reason: str, errno: int | None = None) -> None:
        super().__init__(errno, reason, str(path))
        self.path, self.reason = str(path), reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


def os_reason(exc: BaseException) -> str:
    """The human part of an I/O error: 'Read-only file system', 'No space left on device', ...

    Works for OSError and for safetensors' errors, which wrap the OS message in Rust debug text.
    """
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    found = re.search(r'message: "([^"]+)"', text)  # IoError(Os { code: 28, ..., message: "..." })
    if found:
        return found.group(1)
    code = re.search(r"\(os error (\d+)\)|code: (\d+)", text)  # "I/O error: File too large (os error 27)"
    if code:
        return os.strerror(int(code.group(1) or code.group(2)))
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError that reached a front end: 'PATH: reason' (with the second path of a rename)."""
    reason = os_reason(exc)
    if exc.filename is None:
        return reason
    if exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {reason}"
    return f"{exc.filename}: {reason}"
