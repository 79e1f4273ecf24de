"""Where joblib work runs: locally, or on a Dask cluster chosen by one command-line option.

Every parallel step in hitbench goes through ``joblib.Parallel``. :func:`parallel_backend` is the one
place that turns ``--scheduler ADDRESS`` or ``--dask-workers N`` into joblib's ``dask`` backend; without
either, joblib's local backend runs the work. Tasks receive file paths and frame ranges, never open
HDF5 handles, so on a cluster every worker must see the same files at the same paths.

Under the dask backend joblib sends the tasks to the cluster whatever ``n_jobs`` is, except when the
cluster has a single worker thread in all: then joblib runs them one by one in this process.

Local workers (joblib's loky processes) watch their parent: when it dies, even by SIGKILL, which runs
no clean-up, each worker exits within :data:`PARENT_POLL_SECONDS` instead of finishing its task alone.
loky replaces a worker whose memory grew by more than 300 MB over its tasks (a worker that trained the
cnn holds TensorFlow) and warns that "a worker stopped" when work was waiting: the work goes on in the
new worker, so that warning (:data:`WORKER_REPLACED`) is not shown inside :func:`parallel_backend`.
``--n-jobs`` is bounded by the cores this process may use (:func:`check_n_jobs`).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import TypeVar

import joblib

from hitbench.errors import HitbenchError

#: Seconds between two checks of a local worker that its parent is alive.
PARENT_POLL_SECONDS = 0.5
#: The start of loky's warning that it replaced a worker (the work carries on in the new one).
WORKER_REPLACED = "A worker stopped while some jobs were given to the executor"

T = TypeVar("T")


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks (macOS, Windows)
        return os.cpu_count() or 1


@functools.cache
def cpu_info() -> tuple[str, frozenset[str]]:
    """This machine's processor: its model and its instruction-set flags, from ``/proc/cpuinfo`` (Linux).

    Returns
    -------
    tuple of (str, frozenset of str)
        The ``model name`` line and the ``flags`` line of the first processor listed (``avx2``, ``avx512f``,
        ...); ``"unknown"`` and no flags where ``/proc/cpuinfo`` cannot be read.
    """
    try:
        with open("/proc/cpuinfo") as info:
            first = info.read().split("\n\n", 1)[0]
    except OSError:
        return "unknown", frozenset()
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in first.splitlines())}
    return fields.get("model name", "unknown"), frozenset(fields.get("flags", "").split())


def on_frame_slices(work: Callable[[int, int], T], n_frames: int, threads: int | None = None) -> list[T]:
    """``work(start, stop)`` on contiguous slices of ``n_frames`` frames, results in order.

    For compiled kernels that release the GIL (numba ``nogil``): a batch of frames is split over the cores of
    this process, as the frames of one worker's task. The slices run on the process's kept pool
    (:func:`thread_pool`, one thread per core); ``work`` must not itself wait on that pool.

    Parameters
    ----------
    work : callable
        Takes the first and one-past-the-last frame of its slice.
    n_frames : int
        Frames in all.
    threads : int, optional
        Slices; default :func:`available_cores`, never more than the frames.

    Returns
    -------
    list
        ``work``'s results, slice by slice.
    """
    count = max(1, min(threads or available_cores(), n_frames))
    bounds = [n_frames * k // count for k in range(count + 1)]
    if count == 1:
        return [work(0, n_frames)]
    return list(thread_pool("slices").map(work, bounds[:-1], bounds[1:]))


def thread_pool(name: str) -> ThreadPoolExecutor:
    """This process's pool of threads ``name``, one thread per core it may use, started at first use and kept.

    Starting threads for every batch cost ~0.4 ms a call (two threads), against ~0.02 ms for kept ones. A pool's
    tasks must not wait on tasks of the same pool. A forked child does not inherit its parent's threads: it
    starts its own pool.

    Parameters
    ----------
    name : str
        What the threads do (their names start ``hitbench-<name>``).

    Returns
    -------
    concurrent.futures.ThreadPoolExecutor
    """
    return _thread_pool(name, os.getpid())


@functools.cache
def _thread_pool(name: str, pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(available_cores(), thread_name_prefix=f"hitbench-{name}")


def check_n_jobs(n_jobs: int, option: str = "--n-jobs") -> int:
    """The number of local workers for ``n_jobs``: -1 all cores, 1 to the cores as given, more clamped.

    More workers than cores only compete for them (and each holds its own memory), so a larger
    number is lowered to the cores with a one-line warning on stderr rather than refused: the same
    command line then runs on a laptop and on a cluster node.

    Parameters
    ----------
    n_jobs : int
        The option's value.
    option : str
        The option's name, for messages.

    Returns
    -------
    int
        Workers to start, 1 to :func:`available_cores`.
    """
    cores = available_cores()
    if n_jobs == -1:
        return cores
    if n_jobs < 1:
        raise HitbenchError(f"{option} {n_jobs}: give 1 to {cores} workers (the cores here), or -1 for all of them")
    if n_jobs > cores:
        print(f"hitbench: warning: {option} {n_jobs}: only {cores} cores here; using {cores} workers", file=sys.stderr)
        return cores
    return n_jobs


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: a daemon thread ends this process once ``parent`` is no longer its parent."""
    if os.getppid() != parent:  # the parent died before the worker started
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)  # orphaned: nobody waits for the result, so stop at once without clean-up

    threading.Thread(target=watch, name="hitbench-parent-watch", daemon=True).start()


@contextmanager
def parallel_backend(scheduler: str | None = None, dask_workers: int | None = None) -> Iterator[str]:
    """Run the joblib work inside the block locally (workers that exit with this process) or on a Dask cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running Dask scheduler (e.g. ``tcp://host:8786``).
    dask_workers : int, optional
        Start a local Dask cluster (``dask.distributed.LocalCluster``) with this many worker
        processes of one thread each, for the duration of the block.

    Returns
    -------
    iterator of str
        Yields a one-line description of where the work runs (``"local"`` or the Dask scheduler).
    """
    if scheduler is not None and dask_workers is not None:
        raise HitbenchError("--scheduler and --dask-workers: give one of them, not both")
    if scheduler is None and dask_workers is None:
        with (
            warnings.catch_warnings(),
            joblib.parallel_config(backend="loky", initializer=_exit_with_parent, initargs=(os.getpid(),)),
        ):
            warnings.filterwarnings("ignore", message=WORKER_REPLACED, category=UserWarning)
            yield "local"
        return
    if dask_workers is not None and dask_workers < 1:
        raise HitbenchError(f"--dask-workers {dask_workers}: give at least 1 worker")
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise HitbenchError(
            "--scheduler/--dask-workers need dask.distributed; install it with pip install 'hitbench[dask]'"
        ) from None
    with ExitStack() as stack:
        if dask_workers is not None:
            cluster = stack.enter_context(
                LocalCluster(n_workers=dask_workers, threads_per_worker=1, processes=True, dashboard_address=":0")
            )
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout="20s"))
            except (OSError, TimeoutError, ValueError) as exc:
                raise HitbenchError(
                    f"--scheduler {scheduler}: cannot connect ({exc}); check the address (tcp://HOST:PORT) and "
                    "that the scheduler is running"
                ) from None
        stack.enter_context(joblib.parallel_config(backend="dask"))
        yield f"dask scheduler {client.scheduler.address}"
