"""Training from run files chunk by chunk: the same models as in memory, with bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from hitbench.data.cxi import CXIRun
from hitbench.data.cxi_write import write_cxi
from hitbench.data.dataset import RunFrames
from hitbench.frames import CHUNK_FRAMES, ArrayFrames
from hitbench.methods import registry, thresholds


@pytest.fixture(scope="module")
def run_file(frame_set, tmp_path_factory):
    """The training frames of the shared frame set written to a CXI file (integer ADU, as simulated)."""
    path = tmp_path_factory.mktemp("streaming") / "run.cxi"
    write_cxi(path, frame_set.train_frames, mask=frame_set.mask)
    return CXIRun(path)


@pytest.mark.parametrize("method_name", registry.names())
def test_training_from_files_gives_the_model_trained_in_memory(method_name, fast_params, frame_set, run_file):
    """Frames taken from two parts of a run file train the same model as the same frames in memory."""
    first, second = np.arange(0, 100, 2), np.arange(1, 100, 2)
    streamed = RunFrames([(run_file, first), (run_file, second)])
    masked = frame_set.train_frames * frame_set.mask  # a run file's reader zeroes the masked pixels
    in_memory = np.concatenate([masked[first], masked[second]])
    labels = np.concatenate([frame_set.train_labels[first], frame_set.train_labels[second]])
    params = fast_params(method_name)
    from_files = registry.get(method_name, **params).fit(streamed, labels)
    from_memory = registry.get(method_name, **params).fit(in_memory, labels)
    np.testing.assert_array_equal(
        from_files.decision_function(frame_set.test_frames), from_memory.decision_function(frame_set.test_frames)
    )


def test_run_frames_take_reads_any_positions_in_the_order_asked(frame_set, run_file):
    parts = [(run_file, np.arange(10, 60)), (run_file, np.arange(0, 10))]
    frames = RunFrames(parts)
    expected = np.concatenate([run_file.read(10, 60), run_file.read(0, 10)])
    positions = np.array([55, 3, 59, 0, 12, 50])
    np.testing.assert_array_equal(frames.take(positions), expected[positions])
    np.testing.assert_array_equal(np.concatenate(list(frames.chunks())), expected)
    assert len(frames) == 60 and frames.frame_shape == frame_set.train_frames.shape[1:]


@pytest.mark.parametrize("method_name", ["intensity", "litpix", "svm", "cnn"])
def test_training_set_larger_than_the_memory_budget_trains_in_bounded_memory(
    method_name, fast_params, tmp_path, monkeypatch
):
    """Training on 24 chunks of frames from a file allocates at most a few chunks' worth at a time.

    The ADC quantiles of litpix come from a fixed-size sample of frames (QUANTILE_FRAMES, 1000 by
    default); here 2 chunks' worth, so that the sample stays small beside the training set.
    """
    monkeypatch.setattr(thresholds, "QUANTILE_FRAMES", 2 * CHUNK_FRAMES)
    rng = np.random.default_rng(0)
    n, size = 24 * CHUNK_FRAMES, 64
    labels = np.arange(n) % 2
    path = tmp_path / "big.cxi"
    frames = rng.poisson(0.5, (n, size, size)).astype(np.int16)
    frames[labels == 1, 30:33, 30:33] += 400
    write_cxi(path, frames)
    del frames
    data_bytes = n * size * size * 4  # the training set as float32, what holding it would cost
    source = RunFrames([(CXIRun(path), np.arange(n))])
    params = {**fast_params(method_name), **({"epochs": 1} if method_name == "cnn" else {})}
    registry.get(method_name, **params).fit(source.take(np.arange(20)), labels[:20])  # imports (TensorFlow) first
    tracemalloc.start()
    try:
        registry.get(method_name, **params).fit(source, labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < data_bytes / 4, f"{method_name} held {peak / 1e6:.0f} MB for {data_bytes / 1e6:.0f} MB of frames"


def test_array_frames_sample_is_seeded_and_without_replacement():
    frames = ArrayFrames(np.arange(20 * 4, dtype=np.float32).reshape(20, 2, 2))
    first, again = frames.sample(5, seed=1), frames.sample(5, seed=1)
    np.testing.assert_array_equal(first, again)
    assert len({float(f[0, 0]) for f in first}) == 5
    assert len(frames.sample(50)) == 20


def test_comparison_streams_training_sets_over_the_memory_budget(run_file, monkeypatch):
    from hitbench.bench import runner

    train = ((run_file, np.arange(40)),)
    small = runner._training_frames(train)
    assert isinstance(small, ArrayFrames) and len(small) == 40
    monkeypatch.setattr(runner, "IN_MEMORY_BYTES", 4 * 39 * run_file.frame_shape[0] * run_file.frame_shape[1])
    large = runner._training_frames(train)
    assert isinstance(large, RunFrames)
    np.testing.assert_array_equal(large.to_array(), small.frames)
