"""Property-based checks of the readers and the peak finder.

Each reader and the finder get two kinds of input: valid ones, which must be read (found) with the
right result, and invalid ones, which must be refused with HitbenchError; random bytes only have to
give one of the two, never another exception.
"""

from __future__ import annotations

import bz2
import gzip
import importlib
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hitbench.data.cxi import DATA, DETECTOR, CXIRun
from hitbench.data.formats import read_image
from hitbench.errors import HitbenchError
from hitbench.peaks import PeakFinder8

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Frame dtypes a CXI run may have, and some it may not.
REAL_DTYPES = ["uint8", "int16", "uint16", "int32", "int64", "float32", "float64"]
OTHER_DTYPES = ["bool", "complex64", "S2"]
#: Image formats fabio writes, with the pixel types written in each; and how a file may be compressed.
IMAGE_FORMATS = {
    ".edf": ("edfimage", "EdfImage", ["uint16", "int32", "float32"]),
    ".tif": ("tifimage", "TifImage", ["uint16", "int32", "float32"]),
    ".cbf": ("cbfimage", "CbfImage", ["int32"]),
}
COMPRESSIONS = {"": bytes, ".gz": gzip.compress, ".bz2": bz2.compress}
#: Pixel values of the peak-finder frames: ordinary, large and extreme (sums overflow float32).
FINITE = [0.0, 1.0, -5.0, 50.0, 3e4, 3e38, -3e38]
NOT_FINITE = [np.nan, np.inf, -np.inf]


def _cxi(folder: str, data: np.ndarray, mask_shape: tuple[int, ...] | None) -> Path:
    path = Path(folder) / "run.cxi"
    with h5py.File(path, "w") as h5:
        h5[DATA] = data
        if mask_shape is not None:
            h5[f"{DETECTOR}/mask"] = np.zeros(mask_shape, np.uint16)
    return path


@FAST
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    dtype=st.sampled_from(REAL_DTYPES),
    mask=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cxirun_reads_every_frame_stack(shape: tuple[int, int, int], dtype: str, mask: bool, seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, 255, size=shape).astype(dtype)
    with tempfile.TemporaryDirectory() as folder:
        run = CXIRun(_cxi(folder, data, shape[1:] if mask else None))
        assert run.n_frames == shape[0] and run.frame_shape == shape[1:]
        frames = run.read(0, 2)
    assert frames.dtype == np.float32
    np.testing.assert_array_equal(frames, data[:2].astype(np.float32))


def test_cxirun_reads_a_panel_stack(tmp_path: Path) -> None:
    """(n_frames, panel, ss, fs), as AGIPD or Jungfrau modules are stored: read with the panels stacked along ss."""
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    run = CXIRun(_cxi(str(tmp_path), data, None))
    assert run.n_panels == 3 and run.frame_shape == (12, 5)
    np.testing.assert_array_equal(run.read(), data.reshape(2, 12, 5))


#: What is not a run: a stack of other than 3 dimensions (or 4: panels, see test_cxirun_reads_a_panel_stack),
#: frames that are not real numbers, a mask of another shape.
NOT_A_RUN = st.one_of(
    st.tuples(
        st.lists(st.integers(0, 6), min_size=1, max_size=5).filter(lambda s: len(s) not in (3, 4)),
        st.sampled_from(REAL_DTYPES + OTHER_DTYPES),
        st.none(),
    ),
    st.tuples(st.lists(st.integers(1, 6), min_size=3, max_size=3), st.sampled_from(OTHER_DTYPES), st.none()),
    st.tuples(
        st.lists(st.integers(1, 6), min_size=3, max_size=3),
        st.sampled_from(REAL_DTYPES),
        st.tuples(st.integers(1, 7), st.integers(1, 7)),
    ).filter(lambda case: tuple(case[0][1:]) != case[2]),
)


@FAST
@given(case=NOT_A_RUN, seed=st.integers(0, 2**16))
def test_cxirun_refuses_what_is_not_a_frame_stack(case: tuple, seed: int) -> None:
    shape, dtype, mask_shape = case
    data = np.random.default_rng(seed).integers(0, 255, size=shape).astype(dtype)
    with tempfile.TemporaryDirectory() as folder:
        path = _cxi(folder, data, mask_shape)
        with pytest.raises(HitbenchError, match="run.cxi"):
            CXIRun(path)


@FAST
@given(
    suffix=st.sampled_from(sorted(IMAGE_FORMATS)),
    compression=st.sampled_from(sorted(COMPRESSIONS)),
    shape=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    data=st.data(),
)
def test_read_image_reads_every_written_image(suffix: str, compression: str, shape: tuple[int, int], data) -> None:
    module, name, dtypes = IMAGE_FORMATS[suffix]
    dtype = np.dtype(data.draw(st.sampled_from(dtypes)))
    low = 0 if dtype.kind == "u" else -1  # signed images mark bad pixels negative
    pixels = data.draw(hnp.arrays(dtype, shape, elements=st.integers(low, 10**6 if dtype.kind == "i" else 60000)))
    pixels.flat[0] = abs(pixels.flat[0])  # one good pixel at least: an image with none is refused
    image_class = getattr(importlib.import_module(f"fabio.{module}"), name)
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / f"frame{suffix}"
        image_class(data=pixels).write(str(plain))
        path = plain.with_name(plain.name + compression)
        path.write_bytes(COMPRESSIONS[compression](plain.read_bytes()))
        image = read_image(path)
    good = pixels >= 0
    np.testing.assert_array_equal(image.mask, good)
    np.testing.assert_array_equal(image.frame, np.where(good, pixels, 0).astype(np.float32))


@FAST
@given(content=st.binary(max_size=512), suffix=st.sampled_from([".cbf", ".img", ".edf", ".tif", ".cbf.bz2"]))
def test_read_image_on_random_bytes_reads_or_refuses(content: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"frame{suffix}"
        path.write_bytes(content)
        try:
            image = read_image(path)
        except HitbenchError:
            return
        assert image.frame.shape == image.mask.shape


def _frames(values: list[float]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float32, st.tuples(st.integers(8, 64), st.integers(8, 64)), elements=st.sampled_from(values))


def _mask(shape: tuple[int, ...], masked: bool) -> np.ndarray | None:
    return (np.indices(shape).sum(axis=0) % 3 != 0) if masked else None


@FAST
@given(frame=_frames(FINITE), masked=st.booleans())
def test_peakfinder_finds_on_every_finite_frame(frame: np.ndarray, masked: bool) -> None:
    mask = _mask(frame.shape, masked)
    finder = PeakFinder8()
    table = finder.find_stack(frame[None], mask=mask)
    assert table.n_peaks.shape == (1,) and 0 <= int(table.n_peaks[0]) <= finder.max_num_peaks
    assert np.array_equal(finder.count(frame[None], mask=mask), table.n_peaks)


@FAST
@given(frame=_frames(FINITE), bad=st.sampled_from(NOT_FINITE), where=st.data())
def test_peakfinder_refuses_frames_with_non_finite_pixels(frame: np.ndarray, bad: float, where) -> None:
    row = where.draw(st.integers(0, frame.shape[0] - 1))
    column = where.draw(st.integers(0, frame.shape[1] - 1))
    frame[row, column] = bad
    with pytest.raises(HitbenchError, match="NaN or Inf"):
        PeakFinder8().find_stack(frame[None])
