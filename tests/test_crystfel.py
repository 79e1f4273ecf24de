"""Hand-off to CrystFEL: portable files, .lst/.geom/.cell writers, and indexamajig on a simulated run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.spatial import cKDTree

from hitbench.cli import main
from hitbench.data.crystfel import cell_text, geometry_gaps, geometry_text, lattice, write_list
from hitbench.data.cxi import CXIRun
from hitbench.data.cxi_write import write_cxi
from hitbench.data.geom import read_geom
from hitbench.errors import HitbenchError
from hitbench.geometry import Geometry
from hitbench.methods import registry
from hitbench.modelfile import save_model

INDEXAMAJIG = shutil.which("indexamajig") or next(
    (str(p) for p in [Path("/opt/crystfel/bin/indexamajig")] if p.is_file()), None
)


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@dataclass(frozen=True)
class Pipeline:
    """A simulated run labelled (with CrystFEL files for its hits) and predicted with --hits-cxi."""

    run: Path
    label_out: Path
    predict_out: Path


def _pipeline(root: Path, preset: str, run: int, scale: float, *compression: str) -> Pipeline:
    """simulate -> label --crystfel-out -> predict --hits-cxi with a litpix model trained on the run's truth."""
    _cli(
        "simulate",
        "--preset",
        preset,
        "--runs",
        str(run),
        "--scale",
        str(scale),
        "--out",
        str(root / "sim"),
        *compression,
    )
    path = root / "sim" / f"run_{run:04d}.cxi"
    _cli("label", str(path), "--crystfel-out", str(root / "label"), *compression)
    sim = CXIRun(path)
    model = registry.get("litpix").fit(sim.read(), sim.field("hit").astype(int))
    save_model(model, root / "litpix.hbm")
    _cli(
        "predict",
        "--model",
        str(root / "litpix.hbm"),
        "--out",
        str(root / "predict"),
        "--hits-cxi",
        str(path),
        *compression,
    )
    return Pipeline(path, root / "label", root / "predict")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return _pipeline(tmp_path_factory.mktemp("tiny"), "tiny", 1, 0.3)


# What a plain HDF5 reader gets: h5py with no hdf5plugin and an empty plugin folder; reads every dataset whole.
READ_EVERYTHING = textwrap.dedent("""
    import sys, h5py
    names = []
    for path in sys.argv[1:]:
        with h5py.File(path, "r") as h5:
            h5.visititems(lambda name, item: names.append((path, name)) if isinstance(item, h5py.Dataset) else None)
            for _, name in [n for n in names if n[0] == path]:
                h5[name][()]
    assert "hdf5plugin" not in sys.modules
    print(len(names))
""")


def _read_without_plugins(paths: list[Path], tmp_path: Path) -> subprocess.CompletedProcess:
    empty = tmp_path / "no-plugins"
    empty.mkdir(exist_ok=True)
    env = {"HDF5_PLUGIN_PATH": str(empty), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", READ_EVERYTHING, *map(str, paths)], capture_output=True, text=True, env=env, timeout=120
    )


def test_plain_hdf5_reads_everything_hitbench_writes(tiny: Pipeline, tmp_path: Path) -> None:
    files = [tiny.run, tiny.predict_out / "run_0001.hits.cxi"]  # the run as simulate wrote it and label extended it
    result = _read_without_plugins(files, tmp_path)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 2 * 10  # frames, mask, geometry, truth fields, peaks, labels in each file
    assert {"label", "n_peaks", "spot_x"} <= set(CXIRun(tiny.run).fields)
    assert CXIRun(files[1]).has_peaks


def test_plugin_compression_needs_the_plugin(tmp_path: Path) -> None:
    """The check above can fail: a Blosc (lz4) file is refused by a plain reader, and reads with hitbench."""
    frames = np.arange(2 * 8 * 8, dtype=np.int32).reshape(2, 8, 8)
    path = write_cxi(tmp_path / "blosc.cxi", frames, compression="lz4")
    result = _read_without_plugins([path], tmp_path)
    assert result.returncode != 0 and "can't find plugin" in result.stderr.lower()
    np.testing.assert_array_equal(CXIRun(path).read(), frames)


def test_crystfel_files_of_a_simulated_run(tiny: Pipeline) -> None:
    run = CXIRun(tiny.run)
    labels = run.field("label")
    lines = (tiny.label_out / "run_0001.lst").read_text().splitlines()
    assert lines == [f"{tiny.run.resolve()} //{event}" for event in np.flatnonzero(labels == 1)]
    hits = CXIRun(tiny.predict_out / "run_0001.hits.cxi")
    lines = (tiny.predict_out / "run_0001.hits.lst").read_text().splitlines()
    assert lines == [f"{hits.path.resolve()} //{event}" for event in range(hits.n_frames)]
    geom = (tiny.predict_out / "run_0001.geom").read_text()
    assert geom.splitlines()[1:] == (tiny.label_out / "run_0001.geom").read_text().splitlines()[1:]
    centre_x, centre_y = run.attrs["beam_centre_x"], run.attrs["beam_centre_y"]
    keys = dict(re.findall(r"^(\S+) = (\S+)", geom, re.M))
    assert float(keys["p0/corner_x"]) == pytest.approx(-(centre_x + 0.5), abs=1e-4)
    assert float(keys["p0/corner_y"]) == pytest.approx(-(centre_y + 0.5), abs=1e-4)
    assert float(keys["p0/res"]) == pytest.approx(1 / 110e-6) and float(keys["clen"]) == 0.03
    assert float(keys["photon_energy"]) == 9500 and float(keys["adu_per_photon"]) == run.attrs["gain_adu_per_photon"]
    assert keys["peak_list"] == "/entry_1/result_1" and keys["peak_list_type"] == "cxi"
    assert keys["mask0_data"] == "/entry_1/instrument_1/detector_1/mask"
    assert keys["p0/max_fs"] == "95" and keys["p0/max_ss"] == "95"
    (panel,) = read_geom(tiny.predict_out / "run_0001.geom").panels  # hitbench reads the geometry it writes
    assert panel.lab(centre_x, centre_y) == pytest.approx((0.0, 0.0), abs=1e-4)  # the beam centre is the origin
    assert (tiny.predict_out / "run_0001.cell").read_text() == cell_text([79.1, 79.1, 37.9, 90, 90, 90])


def test_existing_crystfel_file_refused_before_work(tiny: Pipeline, tmp_path: Path) -> None:
    (tmp_path / "run_0001.geom").write_text("mine")
    result = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(tiny.predict_out.parent / "litpix.hbm"),
            "--out",
            str(tmp_path),
            "--hits-cxi",
            str(tiny.run),
        ],
    )
    assert result.exit_code == 1 and "run_0001.geom: already exists" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_0001.geom"]
    assert (tmp_path / "run_0001.geom").read_text() == "mine"


def test_run_without_beam_centre_gets_list_only(tmp_path: Path) -> None:
    geometry = Geometry(0.1, 75e-6, 75e-6, 12e3)
    path = write_cxi(tmp_path / "user.cxi", np.zeros((3, 16, 20), np.uint16), geometry=geometry)
    run = CXIRun(path)
    assert geometry_gaps(run) == [
        f"attribute {key} of /entry_1/hitbench" for key in ("beam_centre_x", "beam_centre_y", "gain_adu_per_photon")
    ]
    with pytest.raises(HitbenchError, match="no CrystFEL geometry without attribute beam_centre_x"):
        geometry_text(run)
    write_list(tmp_path / "user.lst", path, [0, 2])
    assert (tmp_path / "user.lst").read_text() == f"{path.resolve()} //0\n{path.resolve()} //2\n"
    with pytest.raises(HitbenchError, match="already exists"):
        write_list(tmp_path / "user.lst", path, [1])


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ((57.9, 57.9, 86.0, 90, 90, 90), ("tetragonal", "c")),
        ((40.0, 50.0, 50.0, 90, 90, 90), ("tetragonal", "a")),
        ((40.0, 50.0, 60.0, 90, 90, 90), ("orthorhombic", "*")),
        ((78.0, 78.0, 78.0, 90, 90, 90), ("cubic", "*")),
        ((60.0, 60.0, 90.0, 90, 90, 120), ("hexagonal", "c")),
        ((50.0, 50.0, 50.0, 80, 80, 80), ("rhombohedral", "*")),
        ((40.0, 50.0, 60.0, 90, 101.5, 90), ("monoclinic", "b")),
        ((40.0, 50.0, 60.0, 80, 85, 95), ("triclinic", "*")),
    ],
)
def test_lattice_from_cell(cell: tuple[float, ...], expected: tuple[str, str]) -> None:
    assert lattice(cell) == expected
    text = cell_text(cell)
    assert text.startswith("CrystFEL unit cell file version 1.0\n") and f"lattice_type = {expected[0]}\n" in text


@dataclass(frozen=True)
class Chunk:
    """One frame of an indexamajig stream."""

    filename: str
    event: int
    num_peaks: int
    indexed_by: str
    peaks: np.ndarray  # (n, 2) fs, ss of the peaks used, CrystFEL pixels (origin at the first pixel's corner)
    predicted: np.ndarray  # (n, 2) fs, ss of the reflections predicted on the crystals, CrystFEL pixels


def _table(body: str, start: str, end: str, columns: tuple[int, int]) -> np.ndarray:
    rows = [
        line.split() for block in re.findall(rf"{start}\n[^\n]*\n(.*?){end}", body, re.S) for line in block.splitlines()
    ]
    return np.array([(float(r[columns[0]]), float(r[columns[1]])) for r in rows]).reshape(-1, 2)


def _stream(text: str) -> list[Chunk]:
    return [
        Chunk(
            filename=re.search(r"^Image filename: (.*)$", body, re.M).group(1),
            event=int(re.search(r"^Event: //(\d+)$", body, re.M).group(1)),
            num_peaks=int(re.search(r"^num_peaks = (\d+)$", body, re.M).group(1)),
            indexed_by=re.search(r"^indexed_by = (\S+)$", body, re.M).group(1),
            peaks=_table(body, "Peaks from peak search", "End of peak list", (0, 1)),
            predicted=_table(body, "Reflections measured after indexing", "End of reflections", (7, 8)),
        )
        for body in text.split("----- Begin chunk -----")[1:]
    ]


def _index(lst: Path, geom: Path, cwd: Path, *options: str) -> list[Chunk]:
    stream = cwd / f"{lst.stem}.stream"
    stream.unlink(missing_ok=True)
    result = subprocess.run(
        [INDEXAMAJIG, "-i", str(lst), "-g", str(geom), "-o", str(stream), "-j", "1", *options],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    n_listed = len(lst.read_text().splitlines())
    assert f"Final: {n_listed} images processed" in result.stderr, result.stderr[-2000:]
    chunks = _stream(stream.read_text())
    listed = [(path, int(event)) for path, event in (line.split(" //") for line in lst.read_text().splitlines())]
    assert sorted((c.filename, c.event) for c in chunks) == sorted(listed)  # every listed frame was read
    return chunks


def _check_indexing(chunks: list[Chunk], run: CXIRun) -> tuple[int, list[float]]:
    """num_peaks = nPeaks everywhere, only true hits indexed, predictions on the simulator's spots; (indexed, d)."""
    n_peaks, hit = run.peaks.n_peaks, run.field("hit")
    spot_x, spot_y = run.field("spot_x"), run.field("spot_y")
    distances = []
    for chunk in chunks:
        assert chunk.num_peaks == n_peaks[chunk.event], chunk.event
        if chunk.indexed_by == "none":
            continue
        assert hit[chunk.event] == 1, f"miss {chunk.event} indexed"
        known = np.isfinite(spot_x[chunk.event])
        truth = np.stack([spot_x[chunk.event][known], spot_y[chunk.event][known]], axis=1)
        d, _ = cKDTree(truth).query(chunk.predicted - 0.5)  # CrystFEL counts from the pixel corner
        near = d[d < 3.0]  # predictions of reflections the simulator recorded (the next one is >10 px away)
        assert near.size >= 10 and near.max() < 0.5, (chunk.event, np.sort(d)[:20])
        distances.extend(near.tolist())
    return sum(c.indexed_by != "none" for c in chunks), distances


@pytest.mark.slow
@pytest.mark.skipif(INDEXAMAJIG is None, reason="CrystFEL's indexamajig not installed (../shared/crystfel/install.sh)")
def test_indexamajig_indexes_the_hits(tmp_path: Path) -> None:
    """57 frames of cxi-streptavidin run 90: all frames of the labelled run, then predict's hits-only file."""
    piped = _pipeline(tmp_path, "cxi-streptavidin", 90, 0.005)
    run = CXIRun(piped.run)
    all_frames = write_list(tmp_path / "all.lst", piped.run, range(run.n_frames))
    asdf = ["--peaks=cxi", "--no-revalidate", "--indexing=asdf", "-p"]
    geom, cell = piped.label_out / "run_0090.geom", piped.label_out / "run_0090.cell"
    indexed, distances = _check_indexing(_index(all_frames, geom, tmp_path, *asdf, str(cell)), run)
    assert indexed >= 1
    hits = CXIRun(piped.predict_out / "run_0090.hits.cxi")
    assert hits.n_frames >= 1
    out = piped.predict_out
    chunks = _index(out / "run_0090.hits.lst", out / "run_0090.geom", tmp_path, *asdf, str(out / "run_0090.cell"))
    indexed_hits, _ = _check_indexing(chunks, hits)
    assert indexed_hits >= 1
    # CrystFEL applies the geometry's mask: its own peakfinder8, even at one pixel per peak, finds none on bad pixels
    own = _index(
        all_frames,
        geom,
        tmp_path,
        "--peaks=peakfinder8",
        "--threshold=100",
        "--min-snr=5",
        "--min-pix-count=1",
        "--indexing=none",
    )
    found = np.concatenate([c.peaks for c in own]).astype(int)  # fs, ss from the pixel corner: the pixel's index
    assert len(found) > 100 and run.mask[found[:, 1], found[:, 0]].all()
    print(
        f"indexamajig asdf: {indexed}/{run.n_frames} frames indexed ({int(run.field('hit').sum())} true hits), "
        f"{indexed_hits}/{hits.n_frames} of predict's hits; predicted spots to true: "
        f"rms {np.sqrt(np.mean(np.square(distances))):.3f} px, max {max(distances):.3f} px (n={len(distances)})"
    )


def test_label_refuses_existing_crystfel_files_before_touching_the_run(tiny: Pipeline) -> None:
    before = tiny.run.read_bytes()
    result = CliRunner().invoke(main, ["label", str(tiny.run), "--crystfel-out", str(tiny.label_out)])
    assert result.exit_code == 1 and "run_0001.lst: already exists" in result.output
    assert tiny.run.read_bytes() == before
