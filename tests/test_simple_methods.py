"""What the generic module cannot check: the rules of the threshold methods and the SVM's pooling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hitbench.errors import HitbenchError
from hitbench.methods.intensity import IntensityThreshold
from hitbench.methods.litpix import LitPixels
from hitbench.methods.peaks import PeakCount
from hitbench.methods.svm import PCASVM, max_pool
from hitbench.methods.thresholds import fit_threshold


@pytest.mark.parametrize(
    ("scores", "labels", "threshold", "balanced"),
    [
        ([1, 2, 3, 4], [0, 0, 1, 1], 2.5, 1.0),  # half-way between the neighbouring scores
        ([0, 5, 3, 4, 5], [0, 1, 0, 1, 0], 3.5, 5 / 6),
        ([1, 2, 3, 4], [1, 1, 0, 0], np.inf, 0.5),  # anti-correlated: no cut helps, call nothing a hit
        ([7, 7, 7, 7], [0, 1, 0, 1], np.inf, 0.5),
    ],
)
def test_fit_threshold(scores, labels, threshold, balanced):
    got = fit_threshold(np.array(scores, float), np.array(labels))
    assert got == (threshold, pytest.approx(balanced))


def _frames_with_lit_pixels(counts, value=100.0):
    frames = np.zeros((len(counts), 8, 8), np.float32)
    for frame, count in zip(frames, counts, strict=True):
        frame.flat[:count] = value
    return frames


def test_litpix_fixed_adc_threshold_is_kept():
    frames = _frames_with_lit_pixels([0, 1, 5, 6])
    method = LitPixels(adc_threshold=50.0).fit(frames, [0, 0, 1, 1])
    assert method.adc_threshold_ == 50.0 and method.threshold_ == 3.0
    np.testing.assert_array_equal(method.decision_function(frames), [0, 1, 5, 6])
    assert LitPixels(adc_threshold=150.0).fit(frames, [0, 0, 1, 1]).train_balanced_accuracy_ == 0.5


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_litpix_refuses_a_non_finite_adc_threshold(value):
    with pytest.raises(HitbenchError, match="adc_threshold=.*finite"):
        LitPixels(adc_threshold=value).fit(_frames_with_lit_pixels([0, 1, 5, 6]), [0, 0, 1, 1])


def test_litpix_refuses_bad_quantiles():
    with pytest.raises(HitbenchError, match="adc_quantiles"):
        LitPixels(adc_quantiles=(0.5, 2.0)).fit(_frames_with_lit_pixels([0, 6]), [0, 1])


def _frames_with_spots(n_spots):
    frames = np.zeros((len(n_spots), 64, 64), np.float32)
    for frame, n in zip(frames, n_spots, strict=True):
        for k in range(n):
            row, col = divmod(k, 6)
            frame[8 + 8 * row : 10 + 8 * row, 8 + 8 * col : 10 + 8 * col] = 500.0
    return frames


def test_peaks_fixed_minimum_follows_oms_strict_rule():
    frames = _frames_with_spots([0, 2, 3, 4, 20])
    method = PeakCount(min_num_peaks_for_hit=3, max_num_peaks_for_hit=10, adc_threshold=100.0)
    method.fit(frames, [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(method.decision_function(frames), [0, 2, 3, 4, 20])
    # OM: min_num_peaks_for_hit < n_peaks < max_num_peaks_for_hit
    np.testing.assert_array_equal(method.predict(frames), [0, 0, 0, 1, 0])
    assert method.min_num_peaks_for_hit_ == 3


def test_peaks_fitted_minimum():
    frames = _frames_with_spots([0, 1, 6, 8])
    method = PeakCount(adc_threshold=100.0).fit(frames, [0, 0, 1, 1])
    assert method.threshold_ == 3.5 and method.min_num_peaks_for_hit_ == 3
    np.testing.assert_array_equal(method.predict(frames), [0, 0, 1, 1])


def test_max_pool_keeps_a_one_pixel_peak_wherever_it_falls():
    for row, col in [(0, 0), (5, 6), (9, 9)]:
        frame = np.zeros((1, 10, 10), np.float32)
        frame[0, row, col] = 1000.0
        pooled = max_pool(frame, 4)  # 10 is not a multiple of 4: edge blocks hold fewer pixels
        assert pooled.shape == (1, 9)
        assert pooled.max() == 1000.0 and np.count_nonzero(pooled) == 1


def test_svm_caps_components_and_refuses_bad_sizes():
    rng = np.random.default_rng(0)
    frames = rng.poisson(1.0, (12, 16, 16)).astype(np.float32)
    labels = np.arange(12) % 2
    frames[labels == 1, 5, 5] += 50.0
    method = PCASVM(block_size=2, n_components=50).fit(frames, labels)
    assert method.pipeline_.named_steps["pca"].n_components_ == 11  # at most n_frames - 1
    with pytest.raises(HitbenchError, match="block_size"):
        PCASVM(block_size=0).fit(frames, labels)


GOLDEN = Path(__file__).parent / "data" / "golden_simple.npz"


def _golden_inputs(stored: np.ndarray) -> np.ndarray:
    """The golden frames as scored: the stored int16 counts plus quarter steps along each row (exact in float32)."""
    return stored.astype(np.float32) + np.float32(0.25) * (np.arange(stored.shape[-1], dtype=np.float32) % 4)


def _golden_outputs(frames: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """What intensity and litpix give on the golden frames: fitted thresholds and scores, and litpix's scores for fixed
    ADC thresholds given as a Python float (compared in float32, where 2.2499999 is 2.25), as a numpy float64
    (compared in float64) and equal to pixel values."""
    out = {}
    intensity = IntensityThreshold().fit(frames, labels)
    out["intensity_threshold"] = np.float64(intensity.threshold_)
    out["intensity_scores"] = intensity.decision_function(frames)
    litpix = LitPixels().fit(frames, labels)
    out["litpix_adc"] = np.float64(litpix.adc_threshold_)
    out["litpix_threshold"] = np.float64(litpix.threshold_)
    out["litpix_scores"] = litpix.decision_function(frames)
    for key, adc in [("float", 2.2499999), ("float64", np.float64(2.2499999)), ("exact", 3.25)]:
        litpix.adc_threshold_ = adc
        out[f"litpix_scores_{key}"] = litpix.decision_function(frames)
    return out


def test_intensity_and_litpix_reproduce_the_golden_outputs():
    """Scores and thresholds equal those of the code before issue 19's speed work.

    tests/data/golden_simple.npz was written by commit 92be110's intensity and litpix (the last commit before the
    one-pass scoring) from the frames it holds, int16 counts stored whole.
    """
    with np.load(GOLDEN) as golden:
        expected = dict(golden)
    got = _golden_outputs(_golden_inputs(expected.pop("frames")), expected.pop("labels"))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.filterwarnings("error")  # the one-line error only: no numpy warning of Inf - Inf in the sums
@pytest.mark.parametrize("make", [IntensityThreshold, lambda: LitPixels(adc_threshold=50.0)])
@pytest.mark.parametrize("bad", [[np.nan], [np.inf], [-np.inf], [np.inf, -np.inf]])
def test_scoring_pass_refuses_non_finite_frames(make, bad):
    """The NaN and Inf check made from the scoring pass's own sums names the bad frames as check_frames does."""
    frames = _frames_with_lit_pixels([0, 1, 5, 6])
    method = make().fit(frames, [0, 0, 1, 1])
    frames[2].flat[10 : 10 + len(bad)] = bad
    frames[3, 0, 0] = bad[0]
    with pytest.raises(HitbenchError, match=r"^X: 2 frame\(s\) contain NaN or Inf"):
        method.decision_function(frames)


@pytest.mark.filterwarnings("error")  # no numpy warning of the overflow either
@pytest.mark.parametrize("make", [IntensityThreshold, lambda: LitPixels(adc_threshold=50.0)])
def test_finite_frames_whose_sum_overflows_are_scored(make):
    """Finite pixels whose float32 sum overflows pass the check (the pixel check clears them)."""
    method = make().fit(_frames_with_lit_pixels([0, 1, 5, 6]), [0, 0, 1, 1])
    scores = method.decision_function(_frames_with_lit_pixels([0, 6], value=3e38))
    assert scores[0] == 0 and scores[1] in (6, np.inf)
