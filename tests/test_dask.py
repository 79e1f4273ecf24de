"""`--scheduler` / `--dask-workers`: compare and predict on a Dask cluster give the local run's results."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hitbench.cli import main
from hitbench.data.cxi_write import write_cxi
from hitbench.errors import HitbenchError
from hitbench.methods import registry
from hitbench.modelfile import save_model
from hitbench.parallel import parallel_backend
from hitbench.predict import predict_runs
from hitbench.simulate import load_experiment, simulate_run

distributed = pytest.importorskip("dask.distributed")

COMPARE = ["compare", "--preset", "tiny", "--methods", "intensity,litpix", "--train-runs", "1-2", "--seed", "5"]
TIMING = ["fit_seconds", "predict_ms_per_frame", "frames_per_second"]


@pytest.fixture(scope="module")
def scheduler() -> str:
    """Address of a two-worker LocalCluster (threads in this process: quick to start)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as c:
        yield c.scheduler_address


@pytest.fixture(scope="module")
def run_and_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dask")
    experiment = load_experiment("tiny")
    sim = simulate_run(experiment, run=experiment.runs[0], n_frames=80, seed=4)
    hit = np.asarray(sim.truth["hit"]).astype(int)
    model_path = save_model(registry.get("intensity").fit(sim.frames[:40], hit[:40]), root / "intensity.hbm")
    return write_cxi(root / "run_0001.cxi", sim.frames[40:], mask=sim.mask, fields={"hit": hit[40:]}), model_path


def _invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
def test_compare_on_cluster_equals_local(scheduler: str, tmp_path: Path) -> None:
    _invoke(*COMPARE, "--out", str(tmp_path / "local"), "--cache-dir", str(tmp_path / "c1"))
    _invoke(
        *COMPARE,
        "--out",
        str(tmp_path / "dask"),
        "--cache-dir",
        str(tmp_path / "c2"),
        "--n-jobs",
        "2",
        "--scheduler",
        scheduler,
    )
    tables = sorted(p.name for p in (tmp_path / "local" / "tables").iterdir() if not p.name.startswith("speed."))
    assert {"table2_litpix.md", "summary.csv"} <= set(tables)
    for name in tables:
        assert (tmp_path / "local" / "tables" / name).read_bytes() == (tmp_path / "dask" / "tables" / name).read_bytes()
    local, dask = (pd.read_csv(tmp_path / d / "results.csv").drop(columns=TIMING) for d in ("local", "dask"))
    pd.testing.assert_frame_equal(local, dask)
    assert (tmp_path / "local" / "scores.csv.gz").read_bytes() == (tmp_path / "dask" / "scores.csv.gz").read_bytes()


def test_predict_on_cluster_equals_local(scheduler: str, run_and_model: tuple[Path, Path], tmp_path: Path) -> None:
    run_path, model_path = run_and_model
    common = ["predict", "--model", str(model_path), "--chunk-size", "9", "--hits-cxi", str(run_path)]
    _invoke(*common, "--out", str(tmp_path / "local"))
    _invoke(*common, "--out", str(tmp_path / "dask"), "--n-jobs", "2", "--scheduler", scheduler)
    local, dask = (tmp_path / d / "run_0001.hits.csv" for d in ("local", "dask"))
    assert local.read_bytes() == dask.read_bytes()
    assert pd.read_csv(local)["label"].sum() > 0
    frames = [joblib.hash(_frames(tmp_path / d / "run_0001.hits.cxi")) for d in ("local", "dask")]
    assert frames[0] == frames[1]


def _frames(path: Path) -> np.ndarray:
    from hitbench.data.cxi import CXIRun

    return CXIRun(path).read(apply_mask=False)


@pytest.mark.slow
def test_dask_workers_starts_a_local_cluster(run_and_model: tuple[Path, Path], tmp_path: Path) -> None:
    run_path, model_path = run_and_model
    _invoke("predict", "--model", str(model_path), "--out", str(tmp_path / "a"), str(run_path))
    with parallel_backend(dask_workers=2) as where:
        assert where.startswith("dask scheduler tcp://")
        pids = joblib.Parallel(n_jobs=1)(joblib.delayed(_pid)() for _ in range(4))
        predict_runs(model_path, [run_path], tmp_path / "b", chunk_size=16)
    assert _pid() not in pids
    assert (tmp_path / "a" / "run_0001.hits.csv").read_bytes() == (tmp_path / "b" / "run_0001.hits.csv").read_bytes()


def _pid() -> int:
    import os

    return os.getpid()


def test_both_options_refused() -> None:
    with pytest.raises(HitbenchError, match="not both"), parallel_backend("tcp://127.0.0.1:1", 2):
        pass
    with pytest.raises(HitbenchError, match="at least 1"), parallel_backend(dask_workers=0):
        pass
