"""Property-based checks: the readers and the peak finder either work or raise HitbenchError, never crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hitbench.data.cxi import DATA, DETECTOR, CXIRun
from hitbench.data.formats import read_image
from hitbench.errors import HitbenchError
from hitbench.peaks import PeakFinder8

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from(["uint8", "int16", "uint16", "int32", "float32", "float64", "bool", "complex64", "S2"])


@FAST
@given(
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=4),
    dtype=DTYPES,
    mask=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cxirun_on_random_stacks(shape: list[int], dtype: str, mask: bool, seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, 255, size=shape).astype(dtype)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.cxi"
        with h5py.File(path, "w") as h5:
            h5[DATA] = data
            if mask:
                h5[f"{DETECTOR}/mask"] = np.zeros(shape[-2:], np.uint16)
        try:
            run = CXIRun(path)
        except HitbenchError:
            return
        frames = run.read(0, 2)
        assert frames.dtype == np.float32 and frames.shape == (min(2, run.n_frames), *run.frame_shape)


@FAST
@given(content=st.binary(max_size=512), suffix=st.sampled_from([".cbf", ".img", ".edf", ".tif", ".cbf.bz2"]))
def test_read_image_on_random_bytes(content: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"frame{suffix}"
        path.write_bytes(content)
        try:
            image = read_image(path)
        except HitbenchError:
            return
        assert image.frame.shape == image.mask.shape


@FAST
@given(
    frame=hnp.arrays(
        np.float32,
        st.tuples(st.integers(8, 64), st.integers(8, 64)),
        elements=st.sampled_from([0.0, 1.0, -5.0, 50.0, 3e4, 3e38, -3e38, np.nan, np.inf]),
    ),
    masked=st.booleans(),
)
def test_peakfinder_on_random_frames(frame: np.ndarray, masked: bool) -> None:
    mask = (np.indices(frame.shape).sum(axis=0) % 3 != 0) if masked else None
    finder = PeakFinder8()
    try:
        table = finder.find_stack(frame[None], mask=mask)
    except HitbenchError:
        return
    assert table.n_peaks.shape == (1,) and 0 <= int(table.n_peaks[0]) <= finder.max_num_peaks
    assert np.array_equal(finder.count(frame[None], mask=mask), table.n_peaks)
