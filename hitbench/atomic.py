"""Output files appear whole or not at all: written under a temporary name, then renamed into place."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hitbench.errors import HitbenchError


def temp_sibling(path: Path, suffix: str = "") -> Path:
    """Create an empty temporary file beside ``path`` (same folder, so the final rename is atomic).

    The name is ``.NAME.RANDOM.part`` and ``suffix``: hidden by the leading dot, and recognisable as a
    partial ``NAME``. The file is created with mode 0o666 less the process's umask, as any new file.

    Parameters
    ----------
    path : Path
        The final file.
    suffix : str
        Appended to the name, for writers that insist on an ending (Keras: ``.keras``).

    Returns
    -------
    Path
        The temporary file.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextmanager
def atomic_path(path: Path, *, overwrite: bool = True, suffix: str = "") -> Iterator[Path]:
    """A temporary path to write ``path`` through; renamed into place when the block ends cleanly.

    Parameters
    ----------
    path : Path
        Final file (its folder is created if missing).
    overwrite : bool
        Replace a file that exists at the end; if False, keep it and raise HitbenchError.
    suffix : str
        Ending of the temporary file's name (see :func:`temp_sibling`).

    Returns
    -------
    iterator of Path
        The temporary file to write; removed if the block fails or is interrupted.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path, suffix)
    except OSError as exc:
        raise HitbenchError(f"{path.parent}: cannot write there ({exc.strerror}); pick a writable folder") from None
    try:
        yield tmp
        if not overwrite and path.exists():
            raise HitbenchError(f"{path}: file appeared while writing; kept the existing one")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n_bytes < 1024:
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GiB"


def write_error(path: Path, exc: BaseException, needed: int | None = None) -> HitbenchError:
    """The one-line error of a failed write: the file, the cause and the free space on its disk.

    Parameters
    ----------
    path : Path
        The file being written.
    exc : BaseException
        What the write raised (an ``OSError`` of the file system or HDF5's).
    needed : int, optional
        Bytes the write needs, when known.

    Returns
    -------
    HitbenchError
        To raise (``from None``).
    """
    try:
        free = f"{_size(shutil.disk_usage(Path(path).parent).free)} free on its disk"
    except OSError:
        free = "free space unknown"
    need = f", about {_size(needed)} needed" if needed is not None else ""
    cause = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
    return HitbenchError(
        f"{path}: writing failed ({cause}); {free}{need}. Nothing was changed: free space or write elsewhere"
    )


def check_free_space(path: Path, needed: int) -> None:
    """Refuse, before any write, to write ``needed`` bytes beside ``path`` when its disk has less free.

    Parameters
    ----------
    path : Path
        The file to be written.
    needed : int
        Bytes the write needs.
    """
    free = shutil.disk_usage(Path(path).parent).free
    if free < needed:
        raise HitbenchError(
            f"{path}: needs about {_size(needed)} free on its disk, {_size(free)} free; "
            "nothing was changed: free space or move the file"
        )


def atomic_write(path: Path, write: Callable[[Path], None], *, suffix: str = "") -> None:
    """Write a file through ``write(tmp_path)`` and rename it into place; on failure nothing is left.

    Parameters
    ----------
    path : Path
        Final file (its folder is created if missing).
    write : callable
        Writes the content to the temporary path it is given.
    suffix : str
        Ending of the temporary file's name (see :func:`temp_sibling`).
    """
    with atomic_path(path, suffix=suffix) as tmp:
        write(tmp)
