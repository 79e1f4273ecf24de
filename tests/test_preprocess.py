"""Preprocessing steps: shapes, self-calibration, kept peaks, hot pixels, pipelines, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from hitbench.errors import HitbenchError
from hitbench.methods import registry
from hitbench.methods.compose import Preprocessed
from hitbench.methods.litpix import LitPixels
from hitbench.preprocess import (
    BackgroundSubtraction,
    Compress,
    HotPixelMask,
    PhotonConversion,
    RobustPreprocessing,
    RobustScale,
    SpotPixels,
    augment,
    transform_in_batches,
)


def _frames(n: int = 12, size: int = 60, level: float = 50.0, noise: float = 4.0, seed: int = 0) -> np.ndarray:
    """Frames with a radial background gradient plus Gaussian noise, float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    ramp = level * (1.0 + np.hypot(yy - size / 2, xx - size / 2) / size)
    return (ramp + rng.normal(0, noise, (n, size, size))).astype(np.float32)


def _photons(n: int = 16, size: int = 60, seed: int = 0) -> np.ndarray:
    """Poisson photons on a background falling from 3 to 0.05 photons per pixel across the frame."""
    rng = np.random.default_rng(seed)
    profile = np.geomspace(3.0, 0.05, size)[None, :] * np.ones((size, 1))
    return rng.poisson(profile, (n, size, size)).astype(np.float32)


def _detector(photons: np.ndarray, adu_per_photon: float, readout: float, seed: int = 1) -> np.ndarray:
    """Photons as a detector reports them: ADU per photon plus Gaussian readout noise (no exact zeros)."""
    rng = np.random.default_rng(seed)
    frames = adu_per_photon * photons + rng.normal(0, readout, photons.shape)
    return np.where(frames == 0, np.float32(1e-3), frames).astype(np.float32)


# a photon-counting detector (counts), an integrating one in keV (Jungfrau-like), one in ADU (CSPAD-like)
DETECTORS = [(1.0, 0.0), (12.4, 0.25), (28.0, 4.0)]


@pytest.mark.parametrize("adu_per_photon, readout", DETECTORS)
def test_photon_conversion_estimates_the_adu_per_photon(adu_per_photon, readout):
    frames = _detector(_photons(), adu_per_photon, readout)
    estimate = PhotonConversion().estimate(frames)
    assert estimate == pytest.approx(adu_per_photon, rel=0.15)
    converted = PhotonConversion().fit_transform(frames)
    np.testing.assert_allclose(converted, frames / np.float32(estimate), rtol=1e-6)


def test_photon_conversion_with_a_given_gain_and_without_a_slope():
    frames = _detector(_photons(), 28.0, 4.0)
    np.testing.assert_allclose(PhotonConversion(adu_per_photon=7.0).fit_transform(frames), frames / 7.0, rtol=1e-6)
    assert PhotonConversion().estimate(np.full((3, 40, 40), 5.0, dtype=np.float32)) == 1.0  # flat: no photons seen
    assert PhotonConversion().estimate(np.ones((2, 5, 5), dtype=np.float32)) == 1.0  # too few tiles


def test_pipeline_puts_every_detector_on_one_scale():
    """A lone background photon stays below 3 noise units and a 40-photon spot far above, on every detector."""
    photons = _photons(n=16)
    frame, column = np.arange(16), 42 + np.arange(16)
    photons[frame, 30, column] += 40.0  # a one-pixel Bragg peak moving through the photon-sparse part
    outputs = [
        transform_in_batches(RobustPreprocessing(compress="none"), _detector(photons, *detector), batch_frames=16)
        for detector in DETECTORS
    ]
    for out in outputs:
        sparse = np.delete(out[:, :, 40:], 30, axis=1)  # the sparse part without the peak's row
        assert np.percentile(sparse, 99.9) < 3.0
        assert np.all(out[frame, 30, column] > 8.0)
    np.testing.assert_allclose(outputs[1][frame, 30, column], outputs[2][frame, 30, column], rtol=0.3)


@pytest.mark.parametrize("shape, block", [((60, 60), 10), ((37, 53), 8)])
def test_interpolation_is_bilinear_between_tile_centres(shape, block):
    from scipy import ndimage

    from hitbench.preprocess.tiles import interpolate

    values = np.random.default_rng(0).normal(size=(3, -(-shape[0] // block), -(-shape[1] // block)))
    rows = (np.arange(shape[0]) + 0.5) / block - 0.5
    cols = (np.arange(shape[1]) + 0.5) / block - 0.5
    grid = np.meshgrid(rows, cols, indexing="ij")
    expected = [ndimage.map_coordinates(v, grid, order=1, mode="nearest") for v in values]
    np.testing.assert_allclose(interpolate(values, shape, block), expected, atol=1e-5)


def test_background_subtraction_removes_the_gradient_and_keeps_a_one_pixel_peak():
    frames = _frames()
    frames[0, 30, 30] += 500.0
    out = BackgroundSubtraction(block=10).fit_transform(frames)
    assert out.shape == frames.shape and out.dtype == np.float32
    assert abs(float(np.median(out))) < 1.0
    assert out[0, 30, 30] > 480.0


def test_bad_pixels_stay_zero_through_the_pipeline():
    frames = _frames()
    frames[:, :, 20:23] = 0.0  # a module gap
    out = RobustPreprocessing(block=10).fit_transform(frames)
    assert np.all(out[:, :, 20:23] == 0)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("block", [None, 10])
def test_robust_scale_gives_noise_units_whatever_the_gain(block):
    frames = BackgroundSubtraction().fit_transform(_frames(noise=4.0))
    scaled = RobustScale(block=block).fit_transform(frames)
    scaled_gain = RobustScale(block=block).fit_transform(7.5 * frames)
    np.testing.assert_allclose(scaled, scaled_gain, rtol=1e-4, atol=1e-4)
    assert 0.8 < np.std(scaled) < 1.2


def test_local_scale_counts_photon_noise_of_a_thicker_background():
    # photon-sparse integrating detector: 28 ADU per photon, 4 ADU readout noise
    rng = np.random.default_rng(1)
    thin = 28.0 * rng.poisson(0.3, (8, 60, 60)) + rng.normal(0, 4, (8, 60, 60))
    thick = 28.0 * rng.poisson(1.2, (8, 60, 60)) + rng.normal(0, 4, (8, 60, 60))
    pipe = make_pipeline(BackgroundSubtraction(), RobustScale(block=10))
    lit_thin = np.mean(pipe.fit_transform(thin.astype(np.float32)) > 5)
    lit_thick = np.mean(pipe.fit_transform(thick.astype(np.float32)) > 5)
    assert lit_thick < 0.01 and lit_thin < 0.01
    assert RobustScale(block=None).noise(thin.astype(np.float32)).max() < 10  # the MAD sees only readout noise


def test_hot_pixels_found_in_the_batch_are_zeroed_and_moving_peaks_kept():
    frames = RobustScale(block=None).fit_transform(_frames(n=20))
    frames[:, 5, 7] = 100.0  # hot in every frame
    for i in range(20):
        frames[i, 10 + i, 40] = 100.0  # a peak that moves
    hot = HotPixelMask(threshold=5, min_fraction=0.5)
    assert hot.hot_pixels(frames).sum() == 1
    out = hot.fit_transform(frames)
    assert np.all(out[:, 5, 7] == 0)
    assert out[3, 13, 40] == 100.0
    np.testing.assert_array_equal(hot.fit_transform(frames[:4]), frames[:4])  # too few frames to tell


def test_compress_functions():
    x = np.array([[[-3.0, 0.0, 3.0]]], dtype=np.float32)
    np.testing.assert_allclose(Compress("log1p").fit_transform(x), np.log1p([[[0, 0, 3]]]))
    np.testing.assert_allclose(Compress("sqrt").fit_transform(x), np.sqrt([[[0, 0, 3]]]))
    np.testing.assert_allclose(Compress("anscombe").fit_transform(x), 2 * np.sqrt(np.array([[[0, 0, 3]]]) + 0.375))
    np.testing.assert_allclose(Compress("none", clip=2.0).fit_transform(x), [[[0, 0, 2]]])


def test_spot_pixels_keep_spots_and_drop_single_pixels():
    x = np.zeros((2, 12, 12), dtype=np.float32)
    x[0, 3, 3], x[0, 4, 4] = 6.0, 40.0  # a faint and a bright pixel of one spot (diagonal neighbours)
    x[0, 9, 9] = 50.0  # a lone bright pixel: noise tail, hot pixel or cosmic ray
    x[1, 6, 6], x[1, 6, 7] = 4.0, 8.0  # one of the pair below the threshold
    spots = SpotPixels(threshold=5.0).fit_transform(x)
    expected = np.zeros_like(x)
    expected[0, 3, 3] = expected[0, 4, 4] = 1.0
    np.testing.assert_array_equal(spots, expected)
    np.testing.assert_array_equal(SpotPixels(threshold=5.0, min_neighbours=0).fit_transform(x), x > 5.0)


def test_spot_pixel_pipeline_leaves_misses_empty_on_every_detector():
    for adu_per_photon, readout in DETECTORS:
        photons = _photons(n=8)
        for i in range(4):  # a two-pixel spot on each of the first four frames, each elsewhere (not hot)
            photons[i, 20 + 5 * i : 22 + 5 * i, 30] += 60
        spots = RobustPreprocessing(spots=True, gate=5.0).fit_transform(_detector(photons, adu_per_photon, readout))
        for i in range(4):
            assert spots[i, 20 + 5 * i : 22 + 5 * i, 30].min() == 1.0, adu_per_photon
        assert spots[4:].sum() <= 2, adu_per_photon  # at most a stray pair of the Poisson tail


@pytest.mark.parametrize(
    "step, match",
    [
        (Compress("cube"), "function"),
        (SpotPixels(threshold=-1.0), "threshold"),
        (SpotPixels(min_neighbours=9), "neighbours"),
        (BackgroundSubtraction(block=1), "block"),
        (RobustScale(block=2), "block"),
        (RobustScale(floor=-1.0), "floor"),
        (PhotonConversion(block=2), "block"),
        (PhotonConversion(adu_per_photon=0.0), "adu_per_photon"),
        (HotPixelMask(min_fraction=0), "min_fraction"),
        (RobustPreprocessing(block=2), "block"),
        (RobustPreprocessing(hot_fraction=1.5), "hot_fraction"),
        (RobustPreprocessing(compress="cube"), "function"),
    ],
)
def test_bad_parameters_are_refused(step, match):
    with pytest.raises(HitbenchError, match=match):
        step.fit_transform(_frames(n=2))


def test_wrong_shape_is_refused():
    with pytest.raises(HitbenchError, match="n_frames, height, width"):
        RobustPreprocessing().fit_transform(np.zeros((10, 10), dtype=np.float32))


def test_preprocessing_composes_with_a_method_and_clones(frame_set):
    model = Preprocessed(RobustPreprocessing(block=8), LitPixels())
    model.fit(frame_set.train_frames, frame_set.train_labels)
    assert np.mean(model.predict(frame_set.test_frames) == frame_set.test_labels) > 0.7
    copy = clone(model).set_params(preprocess__gate=1.0, method__adc_threshold=2.0)
    assert copy.get_params()["preprocess__block"] == 8 and copy.preprocess.gate == 1.0
    assert model.get_params()["preprocess__gate"] == 0.0  # the clone's change stays the clone's
    assert copy.method.adc_threshold == 2.0 and not hasattr(copy, "method_")
    with pytest.raises(HitbenchError, match="n_augment"):
        Preprocessed(RobustPreprocessing(), LitPixels(), n_augment=-1).fit(_frames(), np.arange(12) % 2)


def test_a_scikit_learn_pipeline_is_preprocessing_too(frame_set):
    steps = RobustPreprocessing(block=8).pipeline()
    train, labels, test = frame_set.train_frames, frame_set.train_labels, frame_set.test_frames
    model = Preprocessed(steps, LitPixels()).fit(train, labels)
    same = Preprocessed(RobustPreprocessing(block=8), LitPixels()).fit(train, labels)
    np.testing.assert_array_equal(model.decision_function(test), same.decision_function(test))


@pytest.mark.parametrize("name", ["svm-robust", "cnn-robust"])
def test_composed_method_scores_as_preprocessing_and_method_by_hand(name, frame_set, fast_params):
    """A robust method is its preprocessing, batch by batch, then its method: nothing else."""
    if name == "cnn-robust":
        pytest.importorskip("tensorflow")
    composed = registry.get(name, **fast_params(name)).fit(frame_set.train_frames, frame_set.train_labels)
    seed = composed.method.get_params().get("random_state") or 0
    frames, labels = augment(
        frame_set.train_frames.astype(np.float32), frame_set.train_labels, n_copies=composed.n_augment, seed=seed
    )
    by_hand = clone(composed.method).fit(transform_in_batches(composed.preprocess, frames), labels)
    test = transform_in_batches(composed.preprocess, frame_set.test_frames)
    np.testing.assert_array_equal(composed.decision_function(frame_set.test_frames), by_hand.decision_function(test))
    np.testing.assert_array_equal(composed.predict(frame_set.test_frames), by_hand.predict(test))


def test_batches_match_one_pass_without_hot_pixels():
    frames = _frames(n=10)
    pipe = make_pipeline(BackgroundSubtraction(), RobustScale(), Compress())
    np.testing.assert_allclose(transform_in_batches(pipe, frames, batch_frames=3), pipe.fit_transform(frames))


def test_augment_is_seeded_and_keeps_labels():
    frames = _frames(n=6)
    labels = np.array([0, 1, 0, 1, 0, 1])
    a, ya = augment(frames, labels, n_copies=2, seed=3)
    b, _ = augment(frames, labels, n_copies=2, seed=3)
    assert a.shape == (18, *frames.shape[1:])
    np.testing.assert_array_equal(ya, np.tile(labels, 3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:6], frames)
    assert not np.array_equal(a[6:12], frames)
    assert augment(frames, labels, n_copies=0, seed=0)[0] is frames


def test_augment_adds_poisson_photons_in_the_detectors_units():
    frames = _detector(_photons(n=8), 28.0, 4.0)
    labels = np.array([0, 1] * 4)
    out, _ = augment(frames, labels, n_copies=1, seed=0, scale=(1.0, 1.0), extra_photons=(5.0, 5.0))
    added = (out[8:] - frames) / 28.0  # photons added to each copy
    assert 4.0 < added.mean() < 6.0  # five photons per pixel, within the gain estimate's error
    assert 0.7 < added.var() / added.mean() < 1.3  # Poisson: variance = mean


def test_robust_preprocessing_reproduces_its_golden_outputs():
    """The robust methods' preprocessing and scores as recorded in tests/data/golden_robust.npz.

    The file was written by the numpy steps at commit d614c6f (before the compiled kernels): 10 frames of
    cxi-streptavidin run 1 (seed 0), cropped to 150 x 163 around the beam stop (edge tiles padded), with two hot
    pixels added; cnn-robust's spot map (packed bits), the svm/litpix-robust chain and PoissonSignificance (every
    4th pixel, and per-frame sums), the batch's ADU per photon, and the scores of litpix-robust and svm-robust
    (``method__n_components=4``) fitted and scored on these frames. cnn-robust's scores follow from its spot map.
    litpix-robust counted lit pixels on the plain chain then; its scores check that chain with ``litpix`` on it.
    """
    from hitbench.methods.robust import CNN_ROBUST_GATE, CNN_ROBUST_LONE_FALSE_ALARMS
    from hitbench.preprocess import PoissonSignificance

    golden = np.load(Path(__file__).parent / "data" / "golden_robust.npz")
    frames, labels = golden["frames"].astype(np.float32), golden["labels"]
    sub = (slice(None), slice(None, None, 4), slice(None, None, 4))
    spots = RobustPreprocessing(
        compress="none", gate=CNN_ROBUST_GATE, spots=True, lone_false_alarms=CNN_ROBUST_LONE_FALSE_ALARMS
    ).fit_transform(frames)
    np.testing.assert_array_equal(np.packbits(spots.astype(bool), axis=-1), golden["spots"])
    assert set(np.unique(spots)) <= {0.0, 1.0}
    plain = RobustPreprocessing().fit_transform(frames)
    np.testing.assert_allclose(plain[sub], golden["plain_sub"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(plain.sum(axis=(1, 2), dtype=np.float64), golden["plain_sum"], rtol=1e-6)
    np.testing.assert_allclose(np.square(plain, dtype=np.float64).sum(axis=(1, 2)), golden["plain_sumsq"], rtol=1e-6)
    assert PhotonConversion().estimate(frames) == pytest.approx(float(golden["gain"]), rel=1e-9)
    z = PoissonSignificance().fit_transform(PhotonConversion().fit_transform(frames))
    np.testing.assert_allclose(z[sub], golden["significance_sub"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(z.sum(axis=(1, 2), dtype=np.float64), golden["significance_sum"], rtol=1e-6)
    np.testing.assert_allclose(np.square(z, dtype=np.float64).sum(axis=(1, 2)), golden["significance_sumsq"], rtol=1e-6)
    litpix = Preprocessed(RobustPreprocessing(), LitPixels()).fit(frames, labels).decision_function(frames)
    np.testing.assert_allclose(litpix, golden["litpix_robust_scores"], rtol=1e-6, atol=1e-6)
    svm = registry.get("svm-robust", method__n_components=4).fit(frames, labels).decision_function(frames)
    # PCA's SVD and the SVC's kernel sums run in OpenBLAS and LAPACK, whose kernels follow the CPU: 5.0e-6 measured
    # on a 2-core AMD EPYC (AVX2) against the AVX-512 Xeon that wrote the file (the preprocessing above: within 1e-6)
    np.testing.assert_allclose(svm, golden["svm_robust_scores"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shape, params",
    [
        ((12, 60, 60), {"gate": 3.0, "lone_false_alarms": 0.1}),
        ((9, 37, 53), {"gate": 2.0, "block": 8, "hot_threshold": 2.0}),  # edge tiles padded, hot level = gate
        ((10, 23, 31), {"gate": 5.0, "block": 5, "hot_fraction": 0.2, "lone_false_alarms": 1.0}),
        ((4, 40, 40), {"gate": 3.0, "adu_per_photon": 28.0}),  # too few frames for hot pixels
        ((1, 7, 12), {"gate": 3.0, "block": 10}),  # smaller than a tile
        ((12, 48, 48), {"gate": 2.2, "hot_threshold": 2.2, "hot_fraction": 0.3}),  # levels not float32 numbers
    ],
)
def test_fused_spot_map_is_the_pipelines(shape, params):
    """RobustPreprocessing(spots=True).transform runs compiled kernels; its spot map is the numpy steps' one."""
    n, height, width = shape
    photons = _photons(n=n, size=max(height, width), seed=height)[:, :height, :width]
    rng = np.random.default_rng(width)
    for i in range(n):  # spots of one to three pixels, hot pixels, a dead column, pixels reading 0
        r, c = rng.integers(1, height - 1), rng.integers(1, width - 1)
        photons[i, r, c : c + i % 3 + 1] += rng.integers(3, 40)
    photons[:, height // 2, width // 3] += 30.0
    frames = np.rint(_detector(photons, 28.0, 4.0))
    frames[:, :, width // 2] = 0.0
    preprocess = RobustPreprocessing(spots=True, compress="none", **params)
    fused = preprocess.fit_transform(frames)
    np.testing.assert_array_equal(fused, preprocess.pipeline().fit_transform(frames))
    assert fused.dtype == np.float32


def test_low_spot_levels_run_the_pipeline():
    """Below a level of 2 the sign of a pixel's excess decides: the numpy steps run, bit for bit."""
    frames = np.rint(_detector(_photons(n=8), 28.0, 4.0))
    for params in ({"gate": 0.0}, {"gate": 3.0, "hot_threshold": 1.0}):
        preprocess = RobustPreprocessing(spots=True, **params)
        np.testing.assert_array_equal(preprocess.fit_transform(frames), preprocess.pipeline().fit_transform(frames))


def test_theil_sen_slope_is_scipys():
    from scipy import stats

    from hitbench.preprocess import _kernels

    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(size=200), 0.5, 0.5]  # ties in x
    y = 3.0 * x + rng.standard_t(2, size=x.size)
    assert _kernels.theil_sen_slope(x, y) == stats.theilslopes(y, x).slope
    assert _kernels.theil_sen_slope(x[:-1], y[:-1]) == stats.theilslopes(y[:-1], x[:-1]).slope


def test_fused_spot_map_of_flat_frames_and_any_memory_order():
    preprocess = RobustPreprocessing(spots=True, gate=3.0, lone_false_alarms=0.1)
    for frames in (np.zeros((9, 30, 30), np.float32), np.full((9, 30, 30), 5.0, np.float32)):
        np.testing.assert_array_equal(preprocess.fit_transform(frames), preprocess.pipeline().fit_transform(frames))
    frames = np.rint(_detector(_photons(n=10), 28.0, 4.0))
    frames[:, 20, 20:22] += 900.0
    expected = preprocess.pipeline().fit_transform(frames)
    np.testing.assert_array_equal(preprocess.fit_transform(np.asfortranarray(frames)), expected)
    np.testing.assert_array_equal(preprocess.fit_transform(frames[:, ::-1, :][:, ::-1, :]), expected)
