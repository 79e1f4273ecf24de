"""What each step of a comparison costs: wall time and the peak memory of the process and its workers.

Memory is sampled from ``/proc`` twice a second: the resident set (RSS) of this process and of every
process below it (the joblib workers that train and score), summed, so the peak is what the whole
comparison held at once. Pages shared between processes are counted in each, so the figure is an
upper bound. Where ``/proc`` is missing (not Linux) the peak is NaN.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

#: Seconds between two memory samples.
SAMPLE_SECONDS = 0.5


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in task.read_text().split()]
    return found


def _rss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def tree_rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process and all its descendants, in bytes (0 without ``/proc``).

    Parameters
    ----------
    pid : int, optional
        The root process; default this one.

    Returns
    -------
    int
    """
    todo, total = [pid or os.getpid()], 0
    while todo:
        current = todo.pop()
        total += _rss_bytes(current)
        todo += _children(current)
    return total


class StepCosts:
    """Wall time and peak memory of named steps, measured with :meth:`step`."""

    def __init__(self) -> None:
        self.steps: list[dict[str, object]] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, object]]:
        """Measure the block as step ``name`` (wall seconds, peak RSS of the process tree in MB).

        Parameters
        ----------
        name : str
            The step's name (e.g. "simulate").

        Yields
        ------
        dict
            Fields the block may fill (``done``: what the step did, e.g. how many models it trained and
            how many came from the cache); they are recorded with the step.
        """
        record: dict[str, object] = {}
        peak = [tree_rss_bytes()]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(SAMPLE_SECONDS):
                peak[0] = max(peak[0], tree_rss_bytes())

        sampler = threading.Thread(target=sample, name=f"hitbench-costs-{name}", daemon=True)
        start = time.perf_counter()
        sampler.start()
        try:
            yield record
        finally:
            done.set()
            sampler.join()
            peak[0] = max(peak[0], tree_rss_bytes())
            measured = bool(peak[0]) and Path("/proc").is_dir()
            self.steps.append(
                {
                    "step": name,
                    "seconds": time.perf_counter() - start,
                    "peak_rss_mb": peak[0] / 2**20 if measured else float("nan"),
                    **record,
                }
            )
