"""Frame I/O: CXI round trip, lazy reading, detector images through fabio, datasets, bad input."""

from __future__ import annotations

import bz2
import csv
import shutil
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from hitbench.data.compression import GZIP_LEVEL
from hitbench.data.cxi import CXIRun
from hitbench.data.cxi_write import CXIWriter, update_cxi, write_cxi
from hitbench.data.dataset import iter_frames, open_experiment, run_labels
from hitbench.data.formats import crop, read_image
from hitbench.errors import HitbenchError
from hitbench.geometry import Geometry
from hitbench.peaktable import PeakTable

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "thaumatin_grid"


def _example(n: int = 12, shape: tuple[int, int] = (24, 30), seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mask = np.ones(shape, dtype=bool)
    mask[3, 4] = mask[10, :2] = False
    npk = rng.integers(0, 6, n)
    peaks = PeakTable(npk, rng.random((n, 8)) * shape[1], rng.random((n, 8)) * shape[0], rng.random((n, 8)) * 1e3)
    return dict(
        frames=rng.poisson(5.0, (n, *shape)).astype(np.float32),
        mask=mask,
        geometry=Geometry(0.1, 110e-6, 110e-6, 9500.0),
        attrs={"run": 90, "experiment": "test", "flux": 1.5e11},
        fields={"label": rng.integers(-1, 2, n).astype(np.int8), "n_spots": rng.integers(0, 50, n)},
        peaks=peaks,
    )


def test_cxi_round_trip(tmp_path: Path) -> None:
    ex = _example()
    write_cxi(
        tmp_path / "run.cxi",
        ex["frames"],
        mask=ex["mask"],
        geometry=ex["geometry"],
        attrs=ex["attrs"],
        fields=ex["fields"],
        peaks=ex["peaks"],
        max_peaks=8,
    )
    run = CXIRun(tmp_path / "run.cxi")
    assert run.n_frames == 12 and run.frame_shape == (24, 30)
    np.testing.assert_array_equal(run.read(apply_mask=False), ex["frames"])
    np.testing.assert_array_equal(run.read(), ex["frames"] * ex["mask"])
    np.testing.assert_array_equal(run.mask, ex["mask"])
    assert run.geometry == ex["geometry"]
    assert run.attrs == ex["attrs"]
    for name, values in ex["fields"].items():
        np.testing.assert_array_equal(run.field(name), values)
    peaks = run.peaks
    np.testing.assert_array_equal(peaks.n_peaks, ex["peaks"].n_peaks)
    for name in ("x", "y", "intensity"):
        np.testing.assert_allclose(getattr(peaks, name), getattr(ex["peaks"], name).astype(np.float32))
    # on disk the mask follows the CXI convention: 0 = good
    with h5py.File(tmp_path / "run.cxi") as h5:
        assert h5["/entry_1/instrument_1/detector_1/mask"][3, 4] != 0
        assert h5["/entry_1/instrument_1/detector_1/mask"][0, 0] == 0
        assert h5["/entry_1/data_1/data"].chunks == (1, 24, 30)


def test_update_keeps_frames(tmp_path: Path) -> None:
    ex = _example()
    path = write_cxi(tmp_path / "run.cxi", ex["frames"], mask=ex["mask"])
    update_cxi(path, peaks=ex["peaks"], fields={"label": np.ones(12, np.int8)}, max_peaks=8)
    update_cxi(path, fields={"label": np.zeros(12, np.int8)})
    run = CXIRun(path)
    np.testing.assert_array_equal(run.read(apply_mask=False), ex["frames"])
    np.testing.assert_array_equal(run.field("label"), np.zeros(12))
    np.testing.assert_array_equal(run.peaks.n_peaks, ex["peaks"].n_peaks)
    with pytest.raises(HitbenchError, match="12 frames"):
        update_cxi(path, fields={"label": np.zeros(3)})


def test_lazy_slices_do_not_load_the_run(tmp_path: Path) -> None:
    path = tmp_path / "big.cxi"
    with CXIWriter(path, (128, 128)) as writer:
        for _ in range(10):
            writer.append(np.random.default_rng(0).random((40, 128, 128), dtype=np.float32))
    run = CXIRun(path)
    assert run.n_frames == 400  # 26 MB of frames on disk
    tracemalloc.start()
    part = run.read(100, 103)
    chunks = sum(frames.shape[0] for frames in iter_frames(run, None, 20))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert part.shape == (3, 128, 128) and chunks == 400
    assert peak < 4 * 20 * 128 * 128 * 4  # a few chunks, never the 26 MB run


def test_writer_never_leaves_half_files(tmp_path: Path) -> None:
    path = tmp_path / "run.cxi"
    with pytest.raises(RuntimeError), CXIWriter(path, (8, 8)) as writer:
        writer.append(np.zeros((2, 8, 8)))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    write_cxi(path, np.zeros((2, 8, 8)))
    before = path.read_bytes()
    with pytest.raises(HitbenchError, match="exists"):
        write_cxi(path, np.ones((2, 8, 8)))
    assert path.read_bytes() == before


@pytest.mark.slow
@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata not present")
def test_real_thaumatin_frames() -> None:
    experiment = open_experiment(REALDATA)
    (run,) = experiment.runs.values()
    frames = run.read()
    assert frames.shape == (19, 350, 350) and frames.dtype == np.float32
    assert (frames >= 0).all()
    labels = run_labels(run)
    assert (labels == 1).sum() == 14 and (labels == 0).sum() == 4 and (labels == -1).sum() == 1
    image = read_image(REALDATA / "thau_3_2_0001.cbf.bz2")
    assert image.frame.shape == (2527, 2463)
    assert not image.mask.all() and (image.frame[~image.mask] == 0).all()  # module gaps (-1) masked
    assert image.beam_center == pytest.approx((1261.61, 1306.96))
    assert image.geometry.distance == pytest.approx(0.351)
    assert image.geometry.photon_energy == pytest.approx(12398.42 / 0.96859, rel=1e-4)
    cropped, mask = crop(image.frame, image.mask, 350, image.beam_center)
    np.testing.assert_array_equal(cropped, frames[0])
    np.testing.assert_array_equal(mask, run.mask)


def test_crop_centre_and_edges() -> None:
    frame = np.arange(100, dtype=np.float32).reshape(10, 10)
    out, mask = crop(frame, np.ones_like(frame, bool), 4)
    np.testing.assert_array_equal(out, frame[3:7, 3:7])
    out, mask = crop(frame, np.ones_like(frame, bool), 4, center=(0.0, 0.0))
    assert mask.sum() == 4 and out[2, 2] == frame[0, 0] and (out[~mask] == 0).all()


def test_labels_csv_errors(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,label\nx.cbf,maybe\n")
    with pytest.raises(HitbenchError, match="maybe"):
        open_experiment(tmp_path)


@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata not present")
def test_compressed_and_plain_images(tmp_path: Path) -> None:
    source = REALDATA / "thau_3_2_0016.cbf.bz2"
    plain = tmp_path / "frame.cbf"
    plain.write_bytes(bz2.decompress(source.read_bytes()))
    shutil.copy(source, tmp_path / "frame2.cbf.bz2")
    np.testing.assert_array_equal(read_image(plain).frame, read_image(tmp_path / "frame2.cbf.bz2").frame)
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["file", "label"], ["frame.cbf", "miss"], ["frame2.cbf.bz2", "hit"]])
    run = open_experiment(tmp_path / "labels.csv").runs[tmp_path.name]
    assert run.read().shape == (2, 350, 350)
    into = np.empty((1, 350, 350), dtype=np.float32)
    assert run.read_at(np.array([1]), out=into) is into and np.array_equal(into, run.read()[1:])
    np.testing.assert_array_equal(run_labels(run, "truth"), [0, 1])


@pytest.mark.parametrize(
    ("compression", "filters"),
    [
        ("gzip", {h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE}),
        ("none", set()),
        ("lz4", {32001}),  # Blosc (registered HDF5 filter id)
        ("bitshuffle", {32008}),
    ],
)
def test_compression_choices_keep_types_and_values(tmp_path: Path, compression: str, filters: set[int]) -> None:
    ex = _example()
    frames = np.random.default_rng(1).poisson(30.0, (12, 24, 30)).astype(np.int32)
    path = write_cxi(
        tmp_path / "run.cxi",
        frames,
        mask=ex["mask"],
        fields=ex["fields"],
        peaks=ex["peaks"],
        max_peaks=8,
        compression=compression,
    )
    update_cxi(path, fields={"label": np.ones(12, np.int8)}, compression=compression)
    with h5py.File(path) as h5:
        datasets = []
        h5.visititems(lambda name, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None)
        arrays = [d for d in datasets if d.ndim]  # all but the scalar geometry
        assert {d.name for d in arrays} >= {
            "/entry_1/data_1/data",
            "/entry_1/instrument_1/detector_1/mask",
            "/entry_1/result_1/nPeaks",
            "/entry_1/hitbench/label",
        }
        for dset in arrays:
            plist = dset.id.get_create_plist()
            assert {plist.get_filter(i)[0] for i in range(plist.get_nfilters())} == filters, dset.name
            assert dset.compression_opts == (GZIP_LEVEL if compression == "gzip" else None)
        assert h5["/entry_1/data_1/data"].dtype == np.int32
        assert h5["/entry_1/hitbench/label"].dtype == np.int8
    run = CXIRun(path)
    assert run.dtype == np.int32
    np.testing.assert_array_equal(run.read(apply_mask=False), frames)
    np.testing.assert_array_equal(run.field("n_spots"), ex["fields"]["n_spots"])


def test_unknown_compression_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(HitbenchError, match="compression 'zstd': choose one of gzip, none, lz4, bitshuffle"):
        write_cxi(tmp_path / "run.cxi", np.zeros((2, 8, 8)), compression="zstd")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32])
def test_frames_compressed_elsewhere_read_back_as_hdf5_would_store_them(tmp_path, dtype):
    """encode_chunk gives exactly what HDF5's shuffle + deflate store: plain h5py reads the frames back equal."""
    from hitbench.data.compression import encode_chunk

    frames = (np.random.default_rng(0).normal(0, 300, (5, 16, 12))).astype(dtype)
    with CXIWriter(tmp_path / "run.cxi", (16, 12), dtype=dtype) as writer:
        writer.append(frames[:2])
        writer.append(frames[2:], encoded=[encode_chunk(frame[np.newaxis], "gzip") for frame in frames[2:]])
    with h5py.File(tmp_path / "run.cxi") as h5:
        np.testing.assert_array_equal(h5["/entry_1/data_1/data"][()], frames)
    assert encode_chunk(frames[0], "none") is None
