"""Writing files so that a crash, Ctrl-C or kill never leaves a half-written output.

An output is written to a temporary ``.NAME.PID-XXXXXXXX.tmp`` beside it and
renamed over it in one step. The temporary is created with mode 0666 so the
OS applies the user's umask (outputs get the user's normal permissions, as
with any file they create). A process killed mid-write (SIGKILL, power loss)
leaves its temporary behind; the next write into that folder removes the
temporaries of processes that no longer exist. Every failure to write is an
``OutputError``: ``cannot write PATH: reason``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Iterator

from .errors import OutputError, TlganError, os_reason

# .NAME.<pid>-<8 hex>.tmp (this module) and .NAME.<8 chars>.tmp (tempfile.mkstemp, older tlgan versions).
_OURS = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")
_LEGACY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
LEGACY_STALE_SECONDS = 3600.0  # older temporaries without a process id are stale after this long
_cleaned: set[Path] = set()
_lock = threading.Lock()


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid < 2**22  # another user's process (alive), or a number no process can have
    return True


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove temporaries in ``folder`` left by killed writers; returns the paths removed.

    Only files named like this module's temporaries are touched: those whose
    process is gone, and mkstemp-style ones older than LEGACY_STALE_SECONDS.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        ours = _OURS.match(entry.name)
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if ours:
                stale = not _process_alive(int(ours["pid"]))
            else:
                stale = bool(_LEGACY.match(entry.name)) and now - entry.stat().st_mtime > LEGACY_STALE_SECONDS
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _clean_once(folder: Path) -> None:
    key = folder.resolve()
    with _lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    clean_stale_temporaries(folder)


def _create_temporary(path: Path) -> Path:
    """A new empty file beside ``path``, created 0666 & ~umask (mkstemp would make it 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _folder_failure(path: Path, folder: Path, exc: OSError) -> OutputError:
    """Why ``folder`` (to hold ``path``) cannot be made; names the ancestor that is a file, if one is."""
    for ancestor in [folder, *folder.parents]:
        if ancestor.exists() or ancestor.is_symlink():
            if not ancestor.is_dir():
                return OutputError(path, f"{ancestor} is a file, not a folder", exc.errno)
            break
    return OutputError(path, os_reason(exc), exc.errno)


def _write_failure(path: Path, exc: BaseException) -> OutputError | None:
    """The OutputError for an exception raised while writing ``path``; None if it is not an I/O failure."""
    if isinstance(exc, TlganError):
        return None
    if isinstance(exc, OSError):
        return OutputError(path, os_reason(exc), exc.errno)
    if type(exc).__name__ == "SafetensorError":  # safetensors wraps the OS error in its own type
        return OutputError(path, os_reason(exc))
    return None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any exception (KeyboardInterrupt included) the temporary file is removed
    and ``path`` is left as it was; I/O failures become OutputError.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _folder_failure(path, path.parent, exc) from None
    try:
        _clean_once(path.parent)
        tmp = _create_temporary(path)
        mode = os.stat(tmp).st_mode & 0o777  # 0666 less the umask, as the OS applied it
    except OSError as exc:
        raise OutputError(path, os_reason(exc), exc.errno) from None
    try:
        yield tmp
        if os.stat(tmp).st_mode & 0o777 != mode:  # writers that replace the file (safetensors) make it 0600
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        failure = _write_failure(path, exc)
        if failure is not None:
            raise failure from None
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def prepare_output(path: str | Path) -> None:
    """Create the folder ``path`` will be written into, now: OutputError naming ``path`` when impossible.

    For commands that write their output after a long computation, so a bad path fails before it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _folder_failure(path, path.parent, exc) from None
    if path.is_dir():
        raise OutputError(path, "it is a folder")


def make_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and parents) for outputs; OutputError ('cannot write FOLDER: reason') when impossible."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _folder_failure(folder, folder, exc) from None
    return folder
