"""Calibration of P(hit): the expected calibration error, its table and the reliability figure; the cnn's
decision threshold fitted on validation frames."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from hitbench.bench.figures.reliability import reliability
from hitbench.bench.metrics import RATES, expected_calibration_error
from hitbench.bench.tables import calibration, table2
from hitbench.errors import HitbenchError
from hitbench.methods import registry
from hitbench.methods.cnn import ReferenceCNN


def test_ece_of_calibrated_and_overconfident_probabilities():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    labels = (rng.uniform(0, 1, p.size) < p).astype(int)
    assert expected_calibration_error(labels, p) < 0.02
    sure = np.where(p > 0.5, 1.0, 0.0)  # the same calls, always certain
    assert expected_calibration_error(labels, sure) == pytest.approx(np.mean(np.abs(labels - sure)), abs=1e-12)
    # by hand: two frames in bin (0.1, 0.2], one hit; one in (0.9, 1]: |0.5 - 0.15| * 2/3 + |1 - 0.95| / 3
    by_hand = expected_calibration_error(np.array([0, 1, 1]), np.array([0.12, 0.18, 0.95]))
    assert by_hand == pytest.approx(0.35 * 2 / 3 + 0.05 / 3)
    assert np.isnan(expected_calibration_error(np.array([]), np.array([])))


def _results(ece: dict[str, float]) -> pd.DataFrame:
    """Tidy results of two methods on two runs (peak labels): ``ece`` gives each method's ECE (NaN: not P(hit))."""
    rows = []
    for method, value in ece.items():
        for run in ("3", "4"):
            row = {
                "method": method,
                "labeller": False,
                "protocol": "cross-run",
                "test_experiment": "tiny",
                "train_experiment": "tiny",
                "test_run": run,
                "train_run": False,
                "scored_against": "peaks",
                "events": 10,
                "ambiguous": 0,
                "scored": 10,
                "hit_percent": 50.0,
                "seed": 0,
                "ece": value,
                "n_train": 10,
                "fit_seconds": 1.0,
                "predict_ms_per_frame": 1.0,
                "frames_per_second": 1e3,
                "tp": 5,
                "fp": 0,
                "tn": 5,
                "fn": 0,
            }
            rows.append(row | {key: 1.0 for rate in RATES for key in (rate, f"{rate}_lo", f"{rate}_hi")})
    return pd.DataFrame(rows)


def _scores(methods: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 200)
    frame = {
        "seed": 0,
        "experiment": "tiny",
        "run": "3",
        "event": np.arange(200),
        "score": p,
        "label": (rng.uniform(0, 1, 200) < p).astype(int),
        "predicted": (p > 0.5).astype(int),
    }
    return pd.concat([pd.DataFrame(frame | {"method": m}) for m in methods], ignore_index=True)


def test_calibration_table_and_figure_only_for_methods_giving_p_hit():
    results = _results({"litpix": float("nan"), "cnn": 0.1})
    table = calibration(results)
    assert list(table.columns) == ["Run", "scored against", "cnn ECE"]
    assert table["cnn ECE"].tolist() == pytest.approx([0.1, 0.1, 0.1])
    assert "ECE" in table2(results, "cnn").columns and "ECE" not in table2(results, "litpix").columns
    had_pyplot = "matplotlib.pyplot" in sys.modules
    fig = reliability(results, _scores(["litpix", "cnn"]))
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "cnn: reliability"
    assert had_pyplot or "matplotlib.pyplot" not in sys.modules
    only_counts = _results({"litpix": float("nan")})
    assert calibration(only_counts).empty and reliability(only_counts, _scores(["litpix"])) is None


def test_which_methods_give_p_hit():
    assert registry.get("cnn").score_is_probability and registry.get("cnn-robust").score_is_probability
    assert not registry.get("litpix-robust").score_is_probability and not registry.get("svm").score_is_probability


def test_validation_threshold_needs_validation_frames():
    frames, labels = np.ones((6, 16, 16), dtype=np.float32), np.array([0, 1] * 3)
    with pytest.raises(HitbenchError, match="validation_split"):
        ReferenceCNN(decision_threshold="validation", validation_split=0.0).fit(frames, labels)
    with pytest.raises(HitbenchError, match="'validation'"):
        ReferenceCNN(decision_threshold="best").fit(frames, labels)


@pytest.mark.slow
def test_cnn_robust_fits_its_threshold_on_validation_frames_only(frame_set):
    pytest.importorskip("tensorflow")
    model = registry.get("cnn-robust", method__epochs=3, method__batch_size=10)
    model.fit(frame_set.train_frames, frame_set.train_labels)
    fitted = model.method_
    assert fitted.threshold_source_ == "validation" and 0 < fitted.threshold_ < 1
    assert fitted.n_epochs_ <= 3
    assert set(model.predict(frame_set.test_frames)) <= {0, 1}
