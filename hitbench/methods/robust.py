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
the other presets and the real frames; these are not.
:func:`~hitbench.methods.spot_search.spot_settings_search` is the procedure that chose ``cnn-robust``'s
spot-map settings (``benchmarks/robust_settings.py`` runs it and writes docs/robustness/settings.md),
and the one ``litpix-robust`` runs at each fit.
"""

from __future__ import annotations

from hitbench.methods.cnn import ReferenceCNN
from hitbench.methods.compose import Preprocessed
from hitbench.methods.litpix import LitPixels
from hitbench.methods.spot_search import SpotSettingsCV
from hitbench.methods.svm import PCASVM
from hitbench.preprocess import RobustPreprocessing

#: ``cnn-robust``'s spot-map settings, as :func:`~hitbench.methods.spot_search.spot_settings_search` chose
#: them on the default preset's training frames (docs/robustness/settings.md).
CNN_ROBUST_GATE = 3.0
CNN_ROBUST_LONE_FALSE_ALARMS = 0.1


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
      :func:`~hitbench.methods.spot_search.spot_settings_search`, 5-fold cross-validation on the training
      frames the harness trains on (default preset, runs 90-93, seed 0's 70 %), docs/robustness/settings.md;
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


def litpix_robust() -> SpotSettingsCV:
    """Lit pixels counted on a spot map whose settings its training frames choose, hot pixels masked per batch.

    Frames go through :class:`~hitbench.preprocess.RobustPreprocessing` with ``spots=True``, as for
    ``cnn-robust``: photons, each pixel's Poisson significance over its local background, batch hot
    pixels zeroed, then the binary map of spot pixels. A pixel is lit when it is a spot pixel, so the
    count depends neither on the detector's units, gain or background level nor on its photon
    statistics (counted in noise units, a photon-counting detector's dense 7-count background lit as
    many pixels in a miss as in a hit of the training detector).

    How the settings were chosen, on the training frames only: the spot map's threshold and one-pixel
    rule by :class:`~hitbench.methods.spot_search.SpotSettingsCV` at each fit (5-fold cross-validation
    of :data:`~hitbench.methods.spot_search.SPOT_GRID`, whose statistic is this very count; on the
    default preset's training frames it picks ``cnn-robust``'s settings); the lit level (among quantiles
    of the training pixel values: 0 or a spot pixel) and the count cut by ``litpix``'s fit (best
    training balanced accuracy). No randomness and no augmentation.

    Returns
    -------
    SpotSettingsCV
        ``SpotSettingsCV(Preprocessed(RobustPreprocessing(compress="none", spots=True), LitPixels()))``.
    """
    return SpotSettingsCV(Preprocessed(RobustPreprocessing(compress="none", spots=True), LitPixels()))
