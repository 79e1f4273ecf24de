"""Training from run files chunk by chunk: the same models as in memory, with bounded memory; frames inflated on
threads equal h5py's."""

from __future__ import annotations

import multiprocessing
import shutil
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

from hitbench.data import chunk_read
from hitbench.data.cxi import CXIRun
from hitbench.data.cxi_write import write_cxi
from hitbench.data.dataset import RunFrames
from hitbench.errors import HitbenchError
from hitbench.frames import CHUNK_FRAMES, ArrayFrames
from hitbench.methods import cnn_batches, registry, thresholds
from hitbench.methods.cnn_batches import SCRATCH_HEADROOM, DecodedCopy


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
    increasing = np.array([0, 12, 49, 50, 55, 59])  # each part's frames read straight into their block of the batch
    np.testing.assert_array_equal(frames.take(increasing), expected[increasing])
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


def _stack(path, frames, **filters):
    with h5py.File(path, "w") as h5:
        h5.create_dataset("frames", data=frames, chunks=(1, *frames.shape[1:]), **filters)
    return path


def _both_reads(path, start=0, stop=None):
    """The frames read by chunk_read (on threads) and by h5py, as float32."""
    with h5py.File(path, "r") as h5:
        dataset = h5["frames"]
        stop = len(dataset) if stop is None else stop
        threaded = np.full((stop - start, *dataset.shape[1:]), np.nan, dtype=np.float32)
        chunk_read.read_frames(dataset, np.arange(start, stop), threaded)
        return threaded, dataset[start:stop].astype(np.float32)


@pytest.mark.parametrize("dtype", sorted(chunk_read.DTYPES, key=str))
def test_threaded_inflate_equals_h5py_bit_for_bit(tmp_path, dtype):
    """Every stored type, both byte orders, whole range (int32 beyond float32's exact integers)."""
    rng = np.random.default_rng(7)
    if dtype.kind == "f":
        values = rng.normal(0, 1e30, (21, 5, 6)).astype(dtype)
        values.flat[:4] = [np.nan, np.inf, -np.inf, -0.0]
    else:
        info = np.iinfo(dtype)
        values = rng.integers(int(info.min), int(info.max), (21, 5, 6), endpoint=True).astype(dtype)
    path = _stack(tmp_path / "s.h5", values, compression="gzip", shuffle=True)
    with h5py.File(path, "r") as h5:
        assert chunk_read.direct_frames(h5["frames"])
    for start, stop in [(0, 21), (3, 4), (5, 19)]:
        threaded, read = _both_reads(path, start, stop)
        assert threaded.tobytes() == read.tobytes()


def test_scattered_frames_are_inflated_in_one_call(run_file, frame_set, monkeypatch):
    """A shuffled training batch's frames, scattered over the file, are shared among the inflate threads in one
    call (not one call per run of consecutive frames), and equal the frames as written, masked."""
    from hitbench.data import cxi

    calls = []
    read_frames = cxi.read_frames
    monkeypatch.setattr(cxi, "read_frames", lambda *args: calls.append(list(args[1])) or read_frames(*args))
    picked = np.array([0, 3, 4, 5, 11, 17, 18, len(frame_set.train_frames) - 1])
    frames = run_file.read_at(picked)
    assert calls == [list(picked)]
    np.testing.assert_array_equal(frames, frame_set.train_frames[picked].astype(np.float32) * frame_set.mask)


def test_panel_stacks_are_inflated_on_threads_too(tmp_path):
    values = np.random.default_rng(0).integers(-100, 3000, (9, 2, 4, 5), dtype=np.int16)
    path = _stack(tmp_path / "p.h5", values, compression="gzip", compression_opts=4, shuffle=True)
    threaded, read = _both_reads(path)
    np.testing.assert_array_equal(threaded, read)


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"compression": "gzip"},  # deflate without shuffle
        {"shuffle": True},
        {"compression": "gzip", "shuffle": True, "fletcher32": True},
        {"compression": "lzf", "shuffle": True},
    ],
)
def test_other_filter_pipelines_are_left_to_h5py(tmp_path, filters):
    path = _stack(tmp_path / "o.h5", np.zeros((3, 4, 4), np.int16), **filters)
    with h5py.File(path, "r") as h5:
        assert not chunk_read.direct_frames(h5["frames"])
    with h5py.File(tmp_path / "c.h5", "w") as h5:  # several frames to a chunk
        h5.create_dataset(
            "frames", data=np.zeros((4, 4, 4), np.int16), chunks=(2, 4, 4), compression="gzip", shuffle=True
        )
        assert not chunk_read.direct_frames(h5["frames"])


def test_a_chunk_stored_without_deflate_or_not_stored_is_read_by_h5py(tmp_path):
    """A chunk whose optional deflate was skipped (filter mask bit 1), and one never written (fill value)."""
    values = np.arange(4 * 3 * 5, dtype=np.int16).reshape(4, 3, 5) * 37
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as h5:
        dataset = h5.create_dataset(
            "frames",
            shape=values.shape,
            dtype=np.int16,
            chunks=(1, 3, 5),
            compression="gzip",
            shuffle=True,
            fillvalue=-3,
        )
        dataset[0] = values[0]
        shuffled = values[1].view(np.uint8).reshape(-1, 2).T.tobytes()  # shuffled, not deflated
        dataset.id.write_direct_chunk((1, 0, 0), shuffled, filter_mask=0b10)
        dataset[3] = values[3]
    threaded, read = _both_reads(path)
    np.testing.assert_array_equal(threaded, read)
    np.testing.assert_array_equal(threaded[[0, 1, 3]], values[[0, 1, 3]])
    assert (threaded[2] == -3).all()


def test_a_damaged_chunk_is_a_one_line_error(tmp_path):
    path = write_cxi(tmp_path / "d.cxi", np.ones((6, 8, 8), np.int16) * 5)
    with h5py.File(path, "r+") as h5:
        dataset = h5["/entry_1/data_1/data"]
        assert chunk_read.direct_frames(dataset)
        dataset.id.write_direct_chunk((4, 0, 0), b"not deflate at all")
    run = CXIRun(path)
    np.testing.assert_array_equal(run.read(0, 4), 5)
    with pytest.raises(HitbenchError, match=r"d\.cxi: frames 2-6 unreadable .*corrupt"):
        run.read(2, 6)


def test_runs_read_from_several_threads_at_once(tmp_path):
    """Raw chunks read by several threads at once (h5py's read_direct_chunk crashed without its lock)."""
    frames = np.random.default_rng(3).integers(0, 500, (64, 12, 10), dtype=np.int16)
    path = write_cxi(tmp_path / "t.cxi", frames)
    runs = [CXIRun(path) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        reads = list(pool.map(lambda k: [runs[k % 4].read(a, a + 8) for a in range(0, 64, 8)], range(16)))
    for read in reads:
        np.testing.assert_array_equal(np.concatenate(read), frames)


def test_a_forked_child_reads_with_threads_of_its_own(tmp_path):
    """The decoding threads are per process: a child forked after reads (multiprocessing's fork) still reads."""
    frames = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    run = CXIRun(write_cxi(tmp_path / "f.cxi", frames))
    np.testing.assert_array_equal(run.read(), frames)
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        np.testing.assert_array_equal(pool.apply_async(run.read).get(timeout=60), frames)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_frames_masked_as_read_equal_frames_times_the_mask_bit_for_bit(tmp_path, compression):
    """Bad pixels zeroed while frames are decoded (or after h5py reads them), into a new array or a buffer given:
    the bytes of h5py's frames times the mask (-0.0 where a negative value is masked)."""
    rng = np.random.default_rng(5)
    frames = rng.integers(-300, 3000, (23, 9, 7), dtype=np.int16)
    mask = rng.random((9, 7)) > 0.3
    path = write_cxi(tmp_path / "m.cxi", frames, mask=mask, compression=compression)
    run = CXIRun(path)
    with h5py.File(path, "r") as h5:
        assert chunk_read.direct_frames(h5["/entry_1/data_1/data"]) == (compression == "gzip")
    expected = frames.astype(np.float32) * run.mask
    assert (np.signbit(expected) & (expected == 0)).any()
    buffer = np.full((20, 9, 7), np.nan, dtype=np.float32)
    assert run.read(3, 23, out=buffer) is buffer
    assert buffer.tobytes() == expected[3:].tobytes()
    assert run.read(0, 23).tobytes() == expected.tobytes()
    assert run.read(2, 5, apply_mask=False).tobytes() == frames[2:5].astype(np.float32).tobytes()
    with pytest.raises(ValueError, match="out must be"):
        run.read(0, 4, out=buffer[:3])


def _counting(source: RunFrames, monkeypatch) -> list[int]:
    """Frames ``source`` gives through take (a list of counts, one per call)."""
    taken: list[int] = []
    original = source.take
    monkeypatch.setattr(source, "take", lambda positions: taken.append(len(positions)) or original(positions))
    return taken


def test_decoded_copy_reads_back_the_frames_of_its_first_pass_without_the_source(run_file, tmp_path, monkeypatch):
    """After one pass in order, frames come from the scratch file (int16 for ADU), equal to the run file's; the
    file has no name in its folder and is gone when closed."""
    source = RunFrames([(run_file, np.arange(10, 60)), (run_file, np.arange(0, 10))])
    expected = np.concatenate(list(source.chunks()))
    copy = DecodedCopy(source, directory=tmp_path)
    taken = _counting(source, monkeypatch)
    assert not copy.complete
    np.testing.assert_array_equal(copy.take(np.array([3, 1])), expected[[3, 1]])  # before the pass: the source's
    np.testing.assert_array_equal(np.concatenate(list(copy.chunks())), expected)
    assert copy.complete and copy._dtype == np.int16 and list(tmp_path.iterdir()) == []
    positions = np.array([55, 3, 59, 0, 12])
    np.testing.assert_array_equal(copy.take(positions), expected[positions])
    np.testing.assert_array_equal(np.concatenate(list(copy.chunks())), expected)
    assert taken == [2]  # only the read before the pass went to the run file
    copy.close()
    assert not copy.complete
    np.testing.assert_array_equal(copy.take(positions), expected[positions])
    assert taken == [2, 5]


def test_decoded_copy_keeps_floats_as_float32_and_drops_what_int16_cannot_hold(tmp_path):
    rng = np.random.default_rng(0)
    fractional = rng.normal(0, 1, (2 * CHUNK_FRAMES, 8, 8)).astype(np.float32)
    copy = DecodedCopy(ArrayFrames(fractional), directory=tmp_path)
    list(copy.chunks())
    assert copy.complete and copy._dtype == np.float32
    np.testing.assert_array_equal(copy.take(np.array([200, 7])), fractional[[200, 7]])
    whole_then_large = np.round(fractional * 10)
    whole_then_large[CHUNK_FRAMES + 5, 0, 0] = 40_000.0  # the second chunk holds a value int16 cannot
    copy = DecodedCopy(ArrayFrames(whole_then_large), directory=tmp_path)
    np.testing.assert_array_equal(np.concatenate(list(copy.chunks())), whole_then_large)
    assert not copy.complete  # dropped: reads go to the source
    np.testing.assert_array_equal(copy.take(np.array([CHUNK_FRAMES + 5])), whole_then_large[[CHUNK_FRAMES + 5]])


def test_decoded_copy_is_not_made_without_room_on_the_disk(run_file, tmp_path, monkeypatch):
    source = RunFrames([(run_file, np.arange(60))])
    free = 2 * 60 * int(np.prod(source.frame_shape)) * SCRATCH_HEADROOM - 1  # int16 bytes x headroom, less one
    monkeypatch.setattr(cnn_batches.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(0, 0, free))
    copy = DecodedCopy(source, directory=tmp_path)
    list(copy.chunks())
    assert not copy.complete and list(tmp_path.iterdir()) == []


def test_cnn_from_files_reads_each_frame_from_them_once(fast_params, frame_set, run_file, monkeypatch):
    """The input statistics' pass reads the run file; the epochs, the validation frames and the threshold read
    the scratch copy."""
    source = RunFrames([(run_file, np.arange(100))])
    taken = _counting(source, monkeypatch)
    chunks = []
    original = source.chunks
    monkeypatch.setattr(source, "chunks", lambda: chunks.append(1) or original())
    params = {**fast_params("cnn"), "epochs": 2, "validation_split": 0.2, "decision_threshold": "validation"}
    registry.get("cnn", **params).fit(source, frame_set.train_labels[:100])
    assert chunks == [1] and taken == []
