"""A full disk: writers stop with one line, leave no partial file, and a user's run stays exactly as it was.

The disk is filled for one command with a file-size limit (``RLIMIT_FSIZE``, SIGXFSZ ignored): every write past
the limit fails as it would on a full disk, without needing a small file system or root.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error

from hitbench.data.cxi import CXIRun
from hitbench.data.cxi_write import update_cxi, write_cxi
from hitbench.errors import HitbenchError
from hitbench.methods import registry
from hitbench.modelfile import save_model
from hitbench.simulate import load_experiment, simulate_run

HITBENCH = str(Path(sys.executable).with_name("hitbench"))


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    experiment = load_experiment("tiny")
    sim = simulate_run(experiment, run=experiment.runs[0], n_frames=30, seed=0)
    root = tmp_path_factory.mktemp("full")
    return write_cxi(
        root / "run_0001.cxi", sim.frames, mask=sim.mask, attrs={"run": 1}, fields={"hit": np.asarray(sim.truth["hit"])}
    )


def _limited(limit: int, *args: object) -> subprocess.CompletedProcess:
    def fill_at_limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [HITBENCH, *map(str, args)], capture_output=True, text=True, preexec_fn=fill_at_limit, timeout=300
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("extra", [-5000, 2000])  # the staging copy fails; the new datasets fail
def test_label_on_a_full_disk_leaves_the_run_as_it_was(run_file: Path, tmp_path: Path, extra: int) -> None:
    run = tmp_path / run_file.name
    run.write_bytes(run_file.read_bytes())
    before = _files(tmp_path)
    result = _limited(run.stat().st_size + extra, "label", run)
    assert_one_line_error(result, str(run), "free on its disk", "Nothing was changed")
    assert _files(tmp_path) == before  # the same bytes, no partial copy left beside it
    assert CXIRun(run).n_frames == 30


def test_simulate_on_a_full_disk_gives_one_line_and_no_partial_file(tmp_path: Path) -> None:
    result = _limited(200_000, "simulate", "--preset", "tiny", "--runs", "1", "--out", tmp_path / "sim")
    assert_one_line_error(result, "run_0001.cxi", "writing failed")
    assert list((tmp_path / "sim").iterdir()) == []


def test_predict_hits_cxi_on_a_full_disk_gives_one_line_and_no_partial_file(run_file: Path, tmp_path: Path) -> None:
    run = CXIRun(run_file)
    model = save_model(registry.get("intensity").fit(run.read(), run.field("hit").astype(int)), tmp_path / "m.hbm")
    out = tmp_path / "out"
    result = _limited(20_000, "predict", run_file, "--model", model, "--out", out, "--hits-cxi")
    assert_one_line_error(result, "writing failed")
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_update_refuses_a_read_only_run(run_file: Path, tmp_path: Path) -> None:
    run = tmp_path / run_file.name
    run.write_bytes(run_file.read_bytes())
    run.chmod(0o444)
    with pytest.raises(HitbenchError, match="not writable"):
        update_cxi(run, fields={"label": np.zeros(30, dtype=np.int8)})
    assert run.read_bytes() == run_file.read_bytes()


def test_update_keeps_permissions_and_symbolic_links(run_file: Path, tmp_path: Path) -> None:
    run = tmp_path / run_file.name
    run.write_bytes(run_file.read_bytes())
    run.chmod(0o640)
    link = tmp_path / "link.cxi"
    link.symlink_to(run)
    update_cxi(link, fields={"label": np.ones(30, dtype=np.int8)})
    assert link.is_symlink() and run.stat().st_mode & 0o777 == 0o640
    np.testing.assert_array_equal(CXIRun(run).field("label"), np.ones(30))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.cxi", run.name]
