"""SpotSettingsCV (litpix-robust): spot-map settings cross-validated on the training frames, then the refit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score

from hitbench.errors import HitbenchError
from hitbench.methods import registry
from hitbench.methods.compose import Preprocessed
from hitbench.methods.litpix import LitPixels
from hitbench.methods.spot_search import SpotSettingsCV, spot_settings_search
from hitbench.preprocess import RobustPreprocessing


def test_refits_the_composition_with_the_settings_its_search_chose(frame_set):
    train, labels = frame_set.train_frames, frame_set.train_labels
    fitted = registry.get("litpix-robust").fit(train, labels)
    search = spot_settings_search(train, labels, preprocess=fitted.estimator.preprocess)
    assert fitted.best_params_ == {
        "preprocess__gate": search.best_params_["spots__threshold"],
        "preprocess__lone_false_alarms": search.best_params_["spots__lone_false_alarms"],
    }
    assert fitted.best_score_ == search.best_score_
    by_hand = clone(fitted.estimator).set_params(**fitted.best_params_).fit(train, labels)
    np.testing.assert_array_equal(
        fitted.decision_function(frame_set.test_frames), by_hand.decision_function(frame_set.test_frames)
    )
    np.testing.assert_array_equal(fitted.predict(frame_set.test_frames), by_hand.predict(frame_set.test_frames))


def _frames_with_spots(
    n: int, adu_per_photon: float, readout: float, background: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frames of a detector (ADU per photon, Gaussian readout) over a Poisson background; every other frame a hit
    with 8 two-pixel Bragg spots of 80 photons each, placed at random."""
    rng = np.random.default_rng(seed)
    photons = rng.poisson(background, (n, *background.shape)).astype(np.float32)
    labels = np.arange(n) % 2
    for i in np.flatnonzero(labels):
        for y, x in rng.integers(4, np.array(background.shape) - 4, size=(8, 2)):
            photons[i, y, x : x + 2] += rng.poisson(40.0, 2)
    frames = adu_per_photon * photons + rng.normal(0, readout, photons.shape) if readout else photons
    return frames.astype(np.float32), labels


def test_litpix_robust_trained_on_an_integrating_detector_counts_spots_on_a_counting_one():
    """Trained on a CSPAD-like detector (28 ADU a photon, a photon-sparse background), scored on a photon-counting
    one whose background is 7 counts a pixel: the spot count still tells hits from misses."""
    sparse = np.geomspace(0.5, 0.02, 64)[None, :] * np.ones((64, 1))
    train, train_labels = _frames_with_spots(64, 28.0, 4.0, sparse, seed=0)
    test, test_labels = _frames_with_spots(64, 1.0, 0.0, np.full((64, 64), 7.0), seed=1)
    fitted = registry.get("litpix-robust").fit(train, train_labels)
    assert balanced_accuracy_score(test_labels, fitted.predict(test)) >= 0.95


@pytest.mark.parametrize(
    "method, match",
    [
        (SpotSettingsCV(Preprocessed(RobustPreprocessing(), LitPixels())), "spots=True"),
        (SpotSettingsCV(LitPixels()), "spots=True"),
        (SpotSettingsCV(Preprocessed(RobustPreprocessing(spots=True), LitPixels()), n_splits=1), "n_splits"),
    ],
)
def test_bad_settings_are_refused(method, match, frame_set):
    with pytest.raises(HitbenchError, match=match):
        method.fit(frame_set.train_frames, frame_set.train_labels)


def test_one_training_hit_is_too_few_to_cross_validate(frame_set):
    labels = np.zeros(len(frame_set.train_labels), dtype=np.int64)
    labels[0] = 1
    with pytest.raises(HitbenchError, match="1 training hit"):
        registry.get("litpix-robust").fit(frame_set.train_frames, labels)
