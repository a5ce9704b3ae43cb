"""Files written whole or not at all: a reader sees the old file or the new one, never half.

In: a path and the bytes it must hold.  Out: the file, durably on disk (the data, then the
folder's entry), or the ``OSError`` with nothing left behind.  Shared by the stages that
write what readers fetch: the combined feeds (``publish``) and the digest archive
(``newsletters``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    A temporary file in the same folder is written, flushed to disk and renamed over
    ``path``.  Returns False without writing when ``path`` already holds ``data``, so an
    unchanged feed keeps its modification time (the web side's Last-Modified).
    """
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a web server under another user must read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return True


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk (POSIX; a no-op elsewhere).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
