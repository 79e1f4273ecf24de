"""Output files appear whole or not at all: written under a temporary name, then renamed into place."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from hitbench.errors import HitbenchError

_UMASK = os.umask(0)
os.umask(_UMASK)


def temp_sibling(path: Path) -> Path:
    """Create an empty temporary file beside ``path`` (same folder, so the final rename is atomic).

    Parameters
    ----------
    path : Path
        The final file.

    Returns
    -------
    Path
        The temporary file, with the permissions a new file would get (umask), hidden by a leading dot.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)
    return Path(name)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write a file through ``write(tmp_path)`` and rename it into place; on failure nothing is left.

    Parameters
    ----------
    path : Path
        Final file (its folder is created if missing).
    write : callable
        Writes the content to the temporary path it is given.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)
    except OSError as exc:
        raise HitbenchError(f"{path.parent}: cannot write there ({exc.strerror}); pick a writable folder") from None
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
