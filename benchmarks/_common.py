"""What the benchmark scripts share: their command line, the record of the machine they ran on, their JSON file.

Every script is run as ``python benchmarks/<script>.py``, so this folder is on ``sys.path`` and a script imports
``from _common import ...``. benchmarks/speed_page.py reads the machine record of :func:`machine`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from hitbench.atomic import atomic_write

#: Where the benchmarks' JSON files are committed.
RESULTS = Path("benchmarks/results")


def arguments(doc: str, result: str) -> argparse.ArgumentParser:
    """A benchmark's command line: described by its docstring's first line, with ``--out``.

    Parameters
    ----------
    doc : str
        The script's docstring (``__doc__``).
    result : str
        Name of its JSON file in :data:`RESULTS`, the default of ``--out``.

    Returns
    -------
    argparse.ArgumentParser
        The parser, to which the script adds its own options.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / result, help="JSON file to write (default: %(default)s)")
    return parser


def load_average() -> list[float]:
    """The load averages over 1, 5 and 15 minutes, rounded to 0.01.

    Returns
    -------
    list of float
        ``os.getloadavg()`` rounded.
    """
    return [round(x, 2) for x in os.getloadavg()]


def machine(load_before: list[float], load_after: list[float] | None = None) -> dict[str, object]:
    """The machine a benchmark ran on and its load before and after the timing.

    Parameters
    ----------
    load_before : list of float
        :func:`load_average` before the timing.
    load_after : list of float, optional
        :func:`load_average` after it (default: now).

    Returns
    -------
    dict
        ``cpus``, ``processor``, ``platform``, ``python``, ``load_before`` and ``load_after``.
    """
    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_before": load_before,
        "load_after": load_average() if load_after is None else load_after,
    }


def write_result(path: Path, result: dict, *, show: bool = True) -> None:
    """Write a benchmark's result as JSON (whole or not at all: :func:`hitbench.atomic.atomic_write`).

    Parameters
    ----------
    path : Path
        The JSON file (its folder is made if missing).
    result : dict
        The figures.
    show : bool
        Print the JSON too (False: print ``wrote <path>``).
    """
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
    if show:
        print(text, end="")
    else:
        print(f"wrote {path}")
