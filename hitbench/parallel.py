"""Where joblib work runs: locally, or on a Dask cluster chosen by one command-line option.

Every parallel step in hitbench goes through ``joblib.Parallel``. :func:`parallel_backend` is the one
place that turns ``--scheduler ADDRESS`` or ``--dask-workers N`` into joblib's ``dask`` backend; without
either, joblib's local backend runs the work. Tasks receive file paths and frame ranges, never open
HDF5 handles, so on a cluster every worker must see the same files at the same paths.

Under the dask backend joblib sends the tasks to the cluster whatever ``n_jobs`` is, except when the
cluster has a single worker thread in all: then joblib runs them one by one in this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import joblib

from hitbench.errors import HitbenchError


@contextmanager
def parallel_backend(scheduler: str | None = None, dask_workers: int | None = None) -> Iterator[str]:
    """Run the joblib work inside the block locally or on a Dask cluster.

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
