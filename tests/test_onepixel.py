"""One-pixel Bragg spots (the cxi-onepixel preset) and the preprocessing that keeps them: Poisson significance,
the lone-pixel rule of SpotPixels, hot pixels by persistence; the spot-map settings search on training frames."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hitbench.errors import HitbenchError
from hitbench.methods.spot_search import SPOT_GRID, spot_settings_search
from hitbench.preprocess import PhotonConversion, PoissonSignificance, RobustPreprocessing, SpotPixels
from hitbench.simulate import load_experiment, simulate_run
from hitbench.simulate.physics import spot_stencil


def _brightest_pixel_share(sigma: float, n: int = 4000) -> float:
    """Mean share of a spot's photons in its brightest pixel, spot centres uniform within a pixel."""
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.5, 0.5, n) + 10, rng.uniform(-0.5, 0.5, n) + 10
    return float(spot_stencil(x, y, sigma)[2].max(axis=1).mean())


def test_the_onepixel_preset_has_spots_one_pixel_big():
    onepixel = load_experiment("cxi-onepixel").sample.spot_sigma_px
    default = load_experiment("cxi-streptavidin").sample.spot_sigma_px
    assert _brightest_pixel_share(onepixel) > 0.75  # most of a spot in one pixel
    assert _brightest_pixel_share(default) < 0.5  # spread over its neighbours


@pytest.fixture(scope="module")
def onepixel_run() -> tuple[np.ndarray, np.ndarray]:
    """48 frames of cxi-onepixel run 1 (seed 0) and their detectable truth (>= 2 detectable spots)."""
    experiment = load_experiment("cxi-onepixel")
    sim = simulate_run(experiment, run=experiment.runs[0], n_frames=48, seed=0)
    return sim.frames.astype(np.float32), (np.asarray(sim.truth["n_spots_detectable"]) >= 2).astype(np.int64)


def test_lone_pixel_rule_counts_one_pixel_spots_and_leaves_misses_nearly_empty(onepixel_run):
    frames, detectable = onepixel_run
    with_lone = RobustPreprocessing(spots=True, gate=3.0, lone_false_alarms=0.1).fit_transform(frames)
    neighbours = RobustPreprocessing(spots=True, gate=3.0).fit_transform(frames)
    lone, pairs = with_lone.sum(axis=(1, 2)), neighbours.sum(axis=(1, 2))
    assert (lone >= pairs).all()
    assert lone[detectable == 1].sum() > 1.2 * pairs[detectable == 1].sum()  # one-pixel spots the pair rule drops
    assert np.median(lone[detectable == 0]) <= 2  # the background's Poisson tail stays out
    assert roc_auc_score(detectable, lone) >= roc_auc_score(detectable, pairs)


def test_poisson_significance_follows_the_poisson_tail_of_a_dense_background():
    rng = np.random.default_rng(0)
    counts = rng.poisson(5.0, (20, 100, 100)).astype(np.float32) + 0  # photon counting, 5 photons per pixel
    counts[counts == 0] = 0.5  # no pixel reads exactly 0 (the bad-pixel value)
    z = PoissonSignificance().fit_transform(counts)
    gaussian = (counts - 5.0) / np.sqrt(5.0)
    expected = 20 * 100 * 100 * 3.17e-5  # pixels of a normal variable above 4: 6.3
    assert (gaussian > 4).sum() > 10 * expected  # read as Gaussian, the Poisson tail is twenty times heavier
    assert (z > 4).sum() < 3 * expected
    assert np.median(z) == pytest.approx(0.0, abs=0.5)


def test_poisson_significance_of_lone_photons_on_a_photon_sparse_detector():
    """0.002 photon per pixel, readout 0.02 photon (Jungfrau-like in keV): photons rarer than the noise's trim."""
    rng = np.random.default_rng(3)
    photons = rng.poisson(0.002, (32, 100, 100))
    frames = (12.4 * photons + rng.normal(0, 0.25, photons.shape)).astype(np.float32)
    z = PoissonSignificance().fit_transform(frames / np.float32(12.4))
    assert (z > 3).mean() < 0.00135 * 1.5  # no more than a normal variable's tail
    assert np.median(z[photons == 1]) < 3  # a lone background photon is not a 3-sigma event
    assert (z[photons >= 3] > 4).all()  # three photons on one pixel are


def test_lone_pixel_level_and_rule():
    x = np.zeros((1, 20, 20), dtype=np.float32)
    x[0, 5, 5] = 12.0  # a one-pixel Bragg spot, far above the background
    x[0, 12, 12] = 3.3  # a lone tail pixel above the pair threshold, below the lone level (3.48)
    x[0, 15, 15], x[0, 15, 16] = 4.0, 3.5  # a faint two-pixel spot
    x[x == 0] = 0.1
    spots = SpotPixels(threshold=3.0, lone_false_alarms=0.1).fit_transform(x)
    assert spots[0, 5, 5] == 1 and spots[0, 12, 12] == 0 and spots[0, 15, 15] == spots[0, 15, 16] == 1
    assert SpotPixels(threshold=3.0).fit_transform(x)[0, 5, 5] == 0  # the neighbour rule alone drops it
    assert SpotPixels(threshold=3.0).lone_threshold(400) == np.inf
    assert SpotPixels(threshold=3.0, lone_false_alarms=0.1).lone_threshold(400) == pytest.approx(3.48, abs=0.01)
    with pytest.raises(HitbenchError, match="lone_false_alarms"):
        SpotPixels(lone_false_alarms=0.0).fit_transform(x)


def test_hot_pixels_are_told_from_one_pixel_spots_by_persistence():
    rng = np.random.default_rng(1)
    frames = rng.poisson(0.05, (16, 60, 60)).astype(np.float32) * 28 + rng.normal(0, 4, (16, 60, 60))
    frames = np.rint(frames).astype(np.float32)
    frames[:, 10, 10] += 800.0  # a hot pixel: bright in every frame
    for i in range(16):  # a one-pixel spot of 15 photons in a new place in each frame
        frames[i, 20 + 2 * i, 40] += 15 * 28
    spots = RobustPreprocessing(spots=True, gate=3.0, lone_false_alarms=0.1).fit_transform(frames)
    assert spots[:, 10, 10].sum() == 0
    assert all(spots[i, 20 + 2 * i, 40] == 1 for i in range(16))


def test_photon_conversion_counts_good_pixels_that_read_zero():
    """Integer ADU with readout noise around a photon-sparse background: about a tenth of good pixels read 0."""
    rng = np.random.default_rng(2)
    photons = rng.poisson(np.geomspace(3.0, 0.05, 60)[None, None, :], (16, 60, 60))
    frames = np.rint(28.0 * photons + rng.normal(0, 4.0, photons.shape)).astype(np.float32)
    assert (frames == 0).mean() > 0.05
    assert PhotonConversion().estimate(frames) == pytest.approx(28.0, rel=0.15)


@pytest.mark.slow  # a cross-validated grid search over the spot settings
def test_spot_settings_search_uses_only_the_frames_it_is_given(onepixel_run):
    frames, detectable = onepixel_run
    search = spot_settings_search(frames, detectable, n_splits=3)
    assert set(search.best_params_) == set(SPOT_GRID)
    assert len(search.cv_results_["mean_test_score"]) == len(SPOT_GRID["spots__threshold"]) * len(
        SPOT_GRID["spots__lone_false_alarms"]
    )
    assert search.best_score_ > 0.8
