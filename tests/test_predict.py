"""`hitbench predict`: hit lists and hits-only CXI files, chunked, atomic, with one-line errors."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_error

from hitbench import predict
from hitbench.cli import main
from hitbench.data import cxi
from hitbench.data.cxi import CXIRun
from hitbench.data.cxi_write import write_cxi
from hitbench.errors import HitbenchError
from hitbench.methods import registry
from hitbench.modelfile import save_model
from hitbench.peaks import PeakFinder8
from hitbench.peaks.labels import label_run
from hitbench.predict import load_model
from hitbench.simulate import load_experiment, simulate_run

N_FRAMES = 90


class _Impostor:
    """Not a hitbench method, though it has what one used to be recognised by."""

    threshold_ = 0.5

    def decision_function(self, frames: np.ndarray) -> np.ndarray:
        return np.zeros(len(frames))


@pytest.fixture(scope="module")
def run_and_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A labelled 90-frame run of the tiny preset (peaks in result_1) and a litpix model record trained on another."""
    root = tmp_path_factory.mktemp("predict")
    experiment = load_experiment("tiny")
    train = simulate_run(experiment, run=experiment.runs[0], n_frames=60, seed=1)
    model = registry.get("litpix").fit(train.frames, np.asarray(train.truth["hit"]).astype(int))
    model_path = save_model(model, root / "litpix-seed1.hbm", {"fit_seconds": 0.0, "n_train": 60, "n_train_hits": 0})
    sim = simulate_run(experiment, run=experiment.runs[1], n_frames=N_FRAMES, seed=2)
    run_path = write_cxi(
        root / "run_0002.cxi", sim.frames, mask=sim.mask, attrs={"run": 2}, fields={"hit": np.asarray(sim.truth["hit"])}
    )
    label_run(run_path, PeakFinder8())
    return run_path, model_path


def _predict(*args: str):
    return CliRunner().invoke(main, ["predict", *args])


def test_hit_list_and_hits_cxi(run_and_model: tuple[Path, Path], tmp_path: Path) -> None:
    run_path, model_path = run_and_model
    result = _predict(
        "--model", str(model_path), "--out", str(tmp_path), "--chunk-size", "16", "--hits-cxi", str(run_path)
    )
    assert result.exit_code == 0, result.output
    model = load_model(model_path)
    run = CXIRun(run_path)
    expected = model.decision_function(run.read())
    table = pd.read_csv(tmp_path / "run_0002.hits.csv")
    assert list(table.columns) == ["event", "score", "label"]
    np.testing.assert_array_equal(table["event"], np.arange(N_FRAMES))
    np.testing.assert_array_equal(table["score"], expected)
    np.testing.assert_array_equal(table["label"], model.predict(run.read()))
    hits = np.flatnonzero(table["label"])
    assert 0 < hits.size < N_FRAMES
    assert f"{hits.size} hits" in result.output

    out = CXIRun(tmp_path / "run_0002.hits.cxi")
    assert out.n_frames == hits.size and out.attrs["run"] == 2
    np.testing.assert_array_equal(out.mask, run.mask)
    np.testing.assert_array_equal(out.read(apply_mask=False), run.read(apply_mask=False)[hits])
    np.testing.assert_array_equal(out.field("source_event"), hits)
    for name in ("hit", "label", "n_peaks"):
        np.testing.assert_array_equal(out.field(name), run.field(name)[hits])
    source, kept = run.peaks, out.peaks
    np.testing.assert_array_equal(kept.n_peaks, source.n_peaks[hits])
    for name in ("x", "y", "intensity"):
        np.testing.assert_array_equal(getattr(kept, name), getattr(source, name)[hits])


def test_chunking_and_jobs_do_not_change_outputs(run_and_model: tuple[Path, Path], tmp_path: Path) -> None:
    run_path, model_path = run_and_model
    outputs = []
    for i, (chunk, jobs) in enumerate([(7, 1), (1000, 1), (16, 2)]):
        predict.predict_runs(model_path, [run_path], tmp_path / str(i), chunk_size=chunk, n_jobs=jobs, hits_cxi=True)
        with h5py.File(tmp_path / str(i) / "run_0002.hits.cxi") as h5:
            frames = h5["/entry_1/data_1/data"][()]
        outputs.append(((tmp_path / str(i) / "run_0002.hits.csv").read_bytes(), frames))
    for csv, frames in outputs[1:]:
        assert csv == outputs[0][0]
        np.testing.assert_array_equal(frames, outputs[0][1])


def test_hit_list_is_the_same_without_the_hits_file(
    run_and_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames masked in place as read (no raw hits kept) score as raw frames masked after reading; the run's
    frames (deflate + shuffle, one a chunk) are inflated on threads, not by h5py."""
    run_path, model_path = run_and_model
    inflated = []
    read_frames = cxi.read_frames
    monkeypatch.setattr(cxi, "read_frames", lambda *args: inflated.append(len(args[2])) or read_frames(*args))
    predict.predict_runs(model_path, [run_path], tmp_path / "plain", chunk_size=32)
    assert sum(inflated) == N_FRAMES
    predict.predict_runs(model_path, [run_path], tmp_path / "hits", chunk_size=32, hits_cxi=True)
    csv = [(tmp_path / out / "run_0002.hits.csv").read_bytes() for out in ("plain", "hits")]
    assert csv[0] == csv[1]


def test_trusted_pickle_and_reads_in_chunks(
    run_and_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_path, model_path = run_and_model
    bare = tmp_path / "bare.joblib"
    joblib.dump(load_model(model_path), bare)  # an older hitbench's bare estimator, read only when trusted
    calls = []
    chunk = predict.predict_chunk
    monkeypatch.setattr(predict, "predict_chunk", lambda *a: calls.append(a[1:4]) or chunk(*a))
    predict.predict_runs(bare, [run_path], tmp_path / "out", chunk_size=40, trust_pickle=True)
    assert calls == [(run_path, 0, 40), (run_path, 40, 80), (run_path, 80, 90)]
    assert len(pd.read_csv(tmp_path / "out" / "run_0002.hits.csv")) == N_FRAMES


def test_interrupted_run_leaves_no_output(
    run_and_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_path, model_path = run_and_model
    chunk = predict.predict_chunk

    def failing(model, run, start, stop, *rest):
        if start > 0:
            raise KeyboardInterrupt
        return chunk(model, run, start, stop, *rest)

    monkeypatch.setattr(predict, "predict_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        predict.predict_runs(model_path, [run_path], tmp_path, chunk_size=30, hits_cxi=True)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_refused(run_and_model: tuple[Path, Path], tmp_path: Path) -> None:
    run_path, model_path = run_and_model
    (tmp_path / "run_0002.hits.cxi").write_text("keep me")
    result = _predict("--model", str(model_path), "--out", str(tmp_path), "--hits-cxi", str(run_path))
    assert_one_line_error(result, "run_0002.hits.cxi: already exists")
    assert (tmp_path / "run_0002.hits.cxi").read_text() == "keep me"
    assert not (tmp_path / "run_0002.hits.csv").exists()


def test_frame_size_mismatch(run_and_model: tuple[Path, Path], tmp_path: Path) -> None:
    _, model_path = run_and_model
    small = write_cxi(tmp_path / "small.cxi", np.zeros((4, 32, 40), np.float32))
    result = _predict("--model", str(model_path), "--out", str(tmp_path / "o"), str(small))
    assert_one_line_error(result, "frames are 32x40 but the model was trained on")


@pytest.mark.parametrize(
    ("content", "trust", "fragment"),
    [
        (None, False, "no such file"),
        (b"junk", False, "not a hitbench model file"),
        ({"a": 1}, False, "a pickle (joblib) file"),
        (b"junk", True, "not a joblib model file"),
        ({"a": 1}, True, "holds a dict, not a fitted hitbench method"),
        (_Impostor(), True, "holds a _Impostor, not a fitted hitbench method"),
    ],
)
def test_bad_model_file(
    run_and_model: tuple[Path, Path], tmp_path: Path, content: object, trust: bool, fragment: str
) -> None:
    run_path, _ = run_and_model
    model = tmp_path / "model.joblib"
    if isinstance(content, bytes):
        model.write_bytes(content)
    elif content is not None:
        joblib.dump(content, model)
    result = _predict(
        "--model", str(model), "--out", str(tmp_path / "o"), *(["--trust-pickle"] if trust else []), str(run_path)
    )
    assert_one_line_error(result, fragment)


def test_chunk_size_checked(run_and_model: tuple[Path, Path], tmp_path: Path) -> None:
    run_path, model_path = run_and_model
    with pytest.raises(HitbenchError, match="--chunk-size 0"):
        predict.predict_runs(model_path, [run_path], tmp_path, chunk_size=0)


def test_crystfel_list_and_what_the_geometry_lacks(run_and_model: tuple[Path, Path], tmp_path: Path) -> None:
    """The fixture run records no beam centre or gain: list file written, no .geom, the reason printed."""
    run_path, model_path = run_and_model
    result = _predict(
        "--model", str(model_path), "--out", str(tmp_path), "--hits-cxi", "--compression", "none", str(run_path)
    )
    assert result.exit_code == 0, result.output
    hits = tmp_path / "run_0002.hits.cxi"
    n_hits = CXIRun(hits).n_frames
    assert (tmp_path / "run_0002.hits.lst").read_text() == "".join(f"{hits.resolve()} //{i}\n" for i in range(n_hits))
    assert "no run_0002.geom: the run lacks distance, pixel size and photon energy" in result.output
    assert "; attribute beam_centre_x of /entry_1/hitbench; " in result.output
    assert "no run_0002.cell: the run records no unit_cell" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_0002.hits.csv", "run_0002.hits.cxi", "run_0002.hits.lst"]
    with h5py.File(hits) as h5:
        assert h5["/entry_1/data_1/data"].compression is None and h5["/entry_1/result_1/nPeaks"].compression is None


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory, fast_params) -> Path:
    """Every registered method trained by `hitbench compare --save-models` on the tiny preset, run 3 scored.

    ``peaks`` gets an upper bound (``max_num_peaks_for_hit``), so its calls are not ``score > threshold_``.
    """
    root = tmp_path_factory.mktemp("round-trip")
    names = registry.names()
    params = [f"--param={name}.{key}={value!r}" for name in names for key, value in fast_params(name).items()]
    result = CliRunner().invoke(
        main,
        [
            "compare",
            "--preset",
            "tiny",
            "--methods",
            ",".join(names),
            "--train-runs",
            "1-2",
            "--test-runs",
            "3",
            *params,
            "--param",
            "peaks.max_num_peaks_for_hit=30",
            "--out",
            str(root / "out"),
            "--cache-dir",
            str(root / "cache"),
            "--save-models",
        ],
    )
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.slow  # its fixture's compare trains every method, the cnn among them
@pytest.mark.parametrize("name", registry.names())
def test_every_method_round_trips_from_compare_to_predict(compared: Path, name: str, tmp_path: Path) -> None:
    """`hitbench predict` with a saved model gives the scores and calls `hitbench compare` gave (one decision path)."""
    run = next((compared / "cache" / "simulated").glob("tiny-*/run_0003.cxi"))
    model = compared / "out" / "models" / f"{name}-seed0.hbm"
    result = CliRunner().invoke(main, ["predict", "--model", str(model), "--out", str(tmp_path), str(run)])
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(tmp_path / "run_0003.hits.csv").set_index("event")
    scores = pd.read_csv(compared / "out" / "scores.csv.gz")
    compare = scores[(scores.method == name) & (scores.run == 3)].set_index("event")
    assert len(compare) > 0
    np.testing.assert_allclose(predicted.loc[compare.index, "score"], compare.score, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(predicted.loc[compare.index, "label"], compare.predicted)
    if name == "peaks":  # the upper bound changed calls, and predict followed it
        loaded = load_model(model)
        assert ((compare.score > loaded.threshold_) & (compare.predicted == 0)).any()


def test_one_local_worker_scores_one_chunk_at_a_time(
    run_and_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are read on two threads, but a method is never asked to score two at once."""
    run_path, model_path = run_and_model
    model = load_model(model_path)
    scoring, most, threads = [], [], set()

    class Watched:
        frame_shape_ = model.frame_shape_

        def decision_function(self, frames: np.ndarray) -> np.ndarray:
            scoring.append(1)
            most.append(len(scoring))
            threads.add(threading.get_ident())
            time.sleep(0.01)
            scoring.pop()
            return model.decision_function(frames)

        def decide(self, scores: np.ndarray) -> np.ndarray:
            return model.decide(scores)

    monkeypatch.setattr(predict, "_model_in_worker", lambda path, trust: Watched())
    predict.predict_runs(model_path, [run_path], tmp_path / "w", chunk_size=8)
    predict.predict_runs(model_path, [run_path], tmp_path / "r", chunk_size=8, n_jobs=2)
    assert max(most) == 1 and len(threads) == 2
    csv = [(tmp_path / out / "run_0002.hits.csv").read_bytes() for out in ("w", "r")]
    assert csv[0] == csv[1]


def test_each_thread_reads_its_chunks_into_one_buffer() -> None:
    """A thread's next chunk (or the shorter last one) reuses its buffer; another thread, or frame size, has its own."""
    first = predict._frames_buffer(8, (5, 4))
    assert first.shape == (8, 5, 4) and first.dtype == np.float32 and first.flags.c_contiguous
    last = predict._frames_buffer(3, (5, 4))
    assert last.shape == (3, 5, 4) and np.shares_memory(first, last)
    assert not np.shares_memory(first, predict._frames_buffer(8, (4, 5)))
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(predict._frames_buffer, 8, (4, 5)).result()
    assert not np.shares_memory(other, predict._frames_buffer(8, (4, 5)))
