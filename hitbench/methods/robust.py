"""The robust methods (``cnn-robust``, ``svm-robust``, ``litpix-robust``): registered compositions.

A robust method is an existing method that sees self-calibrated frames instead of raw ADU:
:class:`hitbench.preprocess.RobustPreprocessing` (photons, background subtraction, each frame in
units of its own noise or each pixel as its significance under Poisson statistics, hot pixels
found in the batch zeroed, then compression or the binary map of spot pixels) applied batch by
batch at training and at prediction alike, through :class:`hitbench.methods.compose.Preprocessed`;
optionally its training set is enlarged with drifted copies (``n_augment``). Preprocessing learns
nothing and needs no labels, so a model trained on one run calibrates itself on every other run or
detector.

Each function below is a registry entry (a factory): it returns the composition with the
registered defaults, whose parameters are set as ``preprocess__gate``, ``method__epochs`` or
``n_augment``. How each default was chosen is in its docstring: on the training frames of the
training experiment only (a validation split or cross-validation of them), or fixed by design and
not tuned. Previous versions of these defaults were tuned by scoring variants on the test runs,
the other presets and the real frames; these are not. :func:`spot_settings_search` is the
procedure that chose ``cnn-robust``'s spot-map settings (``benchmarks/robust_settings.py`` runs it
and writes docs/robustness/settings.md).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from hitbench.methods.cnn import ReferenceCNN
from hitbench.methods.compose import Preprocessed
from hitbench.methods.litpix import LitPixels
from hitbench.methods.svm import PCASVM
from hitbench.preprocess import RobustPreprocessing, SpotPixels, transform_in_batches

#: The spot-map settings :func:`spot_settings_search` scores: the significance a spot pixel must reach
#: (with a lit neighbour) and the background pixels per frame expected above the level at which a pixel
#: counts alone (None: never alone). Listed one-pixel rule first, low thresholds first: ties go to them.
SPOT_GRID = {"spots__lone_false_alarms": [0.1, None], "spots__threshold": [3.0, 4.0, 5.0, 6.0]}
#: ``cnn-robust``'s spot-map settings, as :func:`spot_settings_search` chose them on the default preset's
#: training frames (docs/robustness/settings.md).
CNN_ROBUST_GATE = 3.0
CNN_ROBUST_LONE_FALSE_ALARMS = 0.1


def _log_spot_count(spot_maps: np.ndarray) -> np.ndarray:
    """``log1p`` of the spot pixels of each frame, one column."""
    return np.log1p(spot_maps.sum(axis=(1, 2), dtype=np.float64))[:, np.newaxis]


def spot_settings_search(
    frames: np.ndarray, labels: np.ndarray, *, n_splits: int = 5, batch_frames: int = 128, random_state: int = 0
) -> GridSearchCV:
    """Choose the spot map's threshold and one-pixel rule by cross-validation on training frames.

    The frames go through ``cnn-robust``'s preprocessing up to the spot map (photons, Poisson
    significance, hot pixels; batch by batch as the composition does, learning nothing); then
    each setting of :data:`SPOT_GRID` is scored by stratified ``n_splits``-fold cross-validation
    (:class:`~sklearn.model_selection.GridSearchCV`, balanced accuracy) of the simplest classifier
    that counts spots: :class:`~sklearn.linear_model.LogisticRegression` (balanced class weights)
    on the log of the number of spot pixels per frame. The setting whose map best separates the
    training hits from the training misses by their spot count wins; exact ties go to the first
    in :data:`SPOT_GRID`'s order. No test run, other experiment or real frame is seen.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n_frames, height, width)
        Training frames (raw detector units).
    labels : numpy.ndarray, shape (n_frames,)
        1 hit, 0 miss.
    n_splits : int
        Cross-validation folds.
    batch_frames : int
        Preprocessing batch (as :class:`~hitbench.methods.compose.Preprocessed`'s).
    random_state : int
        Seed of the folds' shuffle.

    Returns
    -------
    sklearn.model_selection.GridSearchCV
        Fitted; ``best_params_`` (``spots__threshold``, ``spots__lone_false_alarms``) and ``cv_results_``.
    """
    significance = RobustPreprocessing(spots=True).pipeline()[:-1]
    prepared = transform_in_batches(significance, frames, batch_frames)
    counter = Pipeline(
        [
            ("spots", SpotPixels()),
            ("count", FunctionTransformer(_log_spot_count)),
            ("cut", LogisticRegression(class_weight="balanced")),
        ]
    )
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return GridSearchCV(counter, SPOT_GRID, scoring="balanced_accuracy", cv=folds).fit(prepared, labels)


def cnn_robust() -> Preprocessed:
    """The reference CNN on self-calibrated frames: the binary map of the pixels of Bragg spots.

    The same network, optimiser and inference engines as ``cnn`` (``method``, with
    ``flip_augment=True``); what changes is its input. Frames go through
    :class:`~hitbench.preprocess.RobustPreprocessing` with ``spots=True``: converted to photons
    (ADU per photon from each batch's photon transfer curve), each pixel expressed as the
    significance of its excess over the local background under Poisson statistics
    (:class:`~hitbench.preprocess.PoissonSignificance`), batch hot pixels zeroed (bright in half
    the frames of the batch: persistent, unlike a Bragg spot), then reduced to
    :class:`~hitbench.preprocess.SpotPixels`: 1 where a pixel's significance exceeds ``gate``
    next to another such pixel, or where a pixel alone reaches the level that the background's
    Poisson tail exceeds in only ``lone_false_alarms`` pixels per frame (a one-pixel Bragg spot),
    0 elsewhere. A faint spot weighs as much as a bright one, so the network counts spots.

    How each setting was chosen, on the training experiment's training frames only:

    - ``preprocess__gate`` and ``preprocess__lone_false_alarms``
      (:data:`CNN_ROBUST_GATE`, :data:`CNN_ROBUST_LONE_FALSE_ALARMS`): by
      :func:`spot_settings_search`, 5-fold cross-validation on the training frames the harness
      trains on (default preset, runs 90-93, seed 0's 70 %), docs/robustness/settings.md;
    - epochs: at most 40 (``cnn``'s fixed default), the epoch with the lowest validation loss on a
      stratified 20 % of the training frames (``method__validation_split=0.2``, early stopping with
      ``method__patience=10``, best weights restored); the network trains on the other 80 %;
    - decision threshold: the cut with the best balanced accuracy on those validation frames'
      P(hit) (``method__decision_threshold="validation"``);
    - the rest are ``cnn``'s (not tuned): network, optimiser, batch 20, balanced class weights,
      random flips of the training frames; no drifted copies (``n_augment=0``); block 10 and the
      hot-pixel rule are :class:`~hitbench.preprocess.RobustPreprocessing`'s defaults.

    Returns
    -------
    Preprocessed
        ``Preprocessed(RobustPreprocessing(compress="none", gate=CNN_ROBUST_GATE, spots=True,
        lone_false_alarms=CNN_ROBUST_LONE_FALSE_ALARMS), ReferenceCNN(flip_augment=True,
        validation_split=0.2, decision_threshold="validation"))``.
    """
    preprocess = RobustPreprocessing(
        compress="none", gate=CNN_ROBUST_GATE, spots=True, lone_false_alarms=CNN_ROBUST_LONE_FALSE_ALARMS
    )
    return Preprocessed(
        preprocess, ReferenceCNN(flip_augment=True, validation_split=0.2, decision_threshold="validation")
    )


def svm_robust() -> Preprocessed:
    """The svm pipeline on self-calibrated frames (photons, background removed, noise units), drift-augmented.

    Frames go through :class:`~hitbench.preprocess.RobustPreprocessing` (in photons, background
    subtracted, in noise units, batch hot pixels zeroed, ``log1p``) before max pooling,
    scaling, PCA and the SVM; the training set holds ``n_augment=1`` copy of each frame with
    drifted signal and added Poisson background.

    How the settings were chosen: none is tuned. The pooling, PCA and SVM settings are ``svm``'s
    defaults, a hit is an SVC decision above 0 (balanced class weights, fitted on the training
    frames); one drifted copy per training frame and the preprocessing defaults are fixed by design.

    Returns
    -------
    Preprocessed
        ``Preprocessed(RobustPreprocessing(), PCASVM(), n_augment=1)``.
    """
    return Preprocessed(RobustPreprocessing(), PCASVM(), n_augment=1)


def litpix_robust() -> Preprocessed:
    """Lit pixels counted in noise units above each frame's local background, hot pixels masked per batch.

    A pixel is lit when it stands ``method__adc_threshold`` (``log1p`` of noise units) above its
    frame's local background after :class:`~hitbench.preprocess.RobustPreprocessing`; background
    level, gain and detector units then no longer move the count. No randomness and no augmentation.

    How the settings were chosen: the lit-pixel level (among quantiles of the training pixel values)
    and the count cut are fitted on the training frames (best training balanced accuracy, ``litpix``'s
    fit); the preprocessing defaults are fixed by design, not tuned.

    Returns
    -------
    Preprocessed
        ``Preprocessed(RobustPreprocessing(), LitPixels())``.
    """
    return Preprocessed(RobustPreprocessing(), LitPixels())
