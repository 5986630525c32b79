"""Where a sample folder lives: a local (or network-mounted) path, or a URI that fsspec understands.

A Ray build's workers write their shards straight into the sample folder, so
the folder must be one that every node reaches: a path on a shared file
system (NFS, Lustre, a mounted bucket), or a URI such as ``s3://bucket/run``
or ``gs://bucket/run`` (fsspec comes with torch; the protocol's own package,
s3fs or gcsfs, must be installed on the driver and on every worker;
``file://`` needs nothing more). Every file is written under a temporary name
and then moved into place, so a reader never sees half a shard.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tlgan.atomic import make_folder, write_bytes_atomic
from tlgan.errors import TlganError


def is_uri(location: str | Path) -> bool:
    """True for 'protocol://...' locations (read through fsspec), False for plain paths."""
    return isinstance(location, str) and "://" in location


class SampleFolder:
    """Files of one sample folder by name: exists / read / write (atomic), for a path or an fsspec URI."""

    def __init__(self, location: str | Path) -> None:
        self.location = str(location)
        self._fs = None
        if is_uri(self.location):
            try:
                import fsspec
            except ImportError:
                raise TlganError(f"{self.location} is a URI, which needs fsspec (pip install fsspec)") from None
            try:
                self._fs, self._root = fsspec.core.url_to_fs(self.location)
            except (ImportError, ValueError) as exc:
                raise TlganError(f"cannot open {self.location}: {exc}") from None
        else:
            self._root = str(Path(self.location))

    @property
    def local(self) -> Path | None:
        """The folder as a local path, or None for a URI."""
        return None if self._fs is not None else Path(self._root)

    def __str__(self) -> str:
        return self.location

    def path(self, name: str) -> str:
        return f"{self._root.rstrip('/')}/{name}" if self._fs is not None else str(Path(self._root) / name)

    def exists(self, name: str) -> bool:
        if self._fs is None:
            return Path(self.path(name)).exists()
        return bool(self._fs.exists(self.path(name)))

    def read_bytes(self, name: str) -> bytes:
        try:
            if self._fs is None:
                return Path(self.path(name)).read_bytes()
            return self._fs.cat_file(self.path(name))
        except (OSError, FileNotFoundError) as exc:
            raise TlganError(f"cannot read {self.path(name)}: {exc}") from None

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``name`` whole or not at all."""
        if self._fs is None:
            write_bytes_atomic(self.path(name), data)
            return
        tmp = self.path(f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            self._fs.makedirs(self._root, exist_ok=True)
            self._fs.pipe_file(tmp, data)
            self._fs.mv(tmp, self.path(name))
        except OSError as exc:
            raise TlganError(f"cannot write {self.path(name)}: {exc}") from None
        finally:
            if self._fs.exists(tmp):
                self._fs.rm(tmp)

    def makedirs(self) -> None:
        if self._fs is None:
            make_folder(self._root)
        else:
            self._fs.makedirs(self._root, exist_ok=True)
