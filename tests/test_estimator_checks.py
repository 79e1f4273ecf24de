"""scikit-learn's estimator checks, where they apply to hitbench's methods.

A hitbench method is a classifier of detector frames: ``fit(X, y)`` takes a stack of frames
``(n_frames, height, width)`` and refuses anything else with a one-line :class:`HitbenchError`.
scikit-learn's checks feed tabular ``(n_samples, n_features)`` arrays, so every check that fits or
predicts is refused at its first call and says nothing about the method; those are expected to
fail, and are listed below with their reasons instead of being run (as xfails, each would cost a
full traceback for nothing). The checks of the estimator API apply and must pass: cloning,
``get_params``/``set_params``, nothing set or validated in ``__init__``, default-constructible
parameters, ``NotFittedError`` before ``fit``, tags, ``repr``. tests/test_methods.py covers the
same behaviour (round trips, seeds, refusals) on frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import pytest
from sklearn.utils.estimator_checks import estimator_checks_generator

from hitbench.methods import registry

#: Why each check that fits or predicts does not apply, by reason.
NOT_APPLICABLE_BY_REASON = {
    "X is tabular (n_samples, n_features); a method takes frames (n_frames, height, width) and refuses 2-D X": (
        "check_array_api_input",
        "check_class_weight_classifiers",
        "check_classifier_data_not_an_array",
        "check_classifiers_classes",
        "check_complex_data",
        "check_dict_unchanged",
        "check_dont_overwrite_parameters",
        "check_dtype_object",
        "check_estimators_dtypes",
        "check_estimators_fit_returns_self",
        "check_estimators_overwrite_params",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_fit1d",
        "check_fit2d_1feature",
        "check_fit2d_1sample",
        "check_fit2d_predict1d",
        "check_fit_check_is_fitted",
        "check_fit_idempotent",
        "check_fit_score_takes_y",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_n_features_in",
        "check_n_features_in_after_fitting",
        "check_pipeline_consistency",
        "check_positive_only_tag_during_fit",
        "check_readonly_memmap_input",
        "check_requires_y_none",
        "check_supervised_y_2d",
    ),
    "expects scikit-learn's ValueError and wording on tabular X; a method refuses the 2-D X first, with a "
    "one-line HitbenchError (bad frames and labels on frames: tests/test_methods.py)": (
        "check_classifiers_one_label",
        "check_classifiers_regression_target",
        "check_classifiers_train",
        "check_estimators_empty_data_messages",
        "check_estimators_nan_inf",
        "check_supervised_y_no_nan",
    ),
    "sparse X: frames are dense images, and a sparse matrix is refused for not being 3-D": (
        "check_estimator_sparse_array",
        "check_estimator_sparse_matrix",
        "check_estimator_sparse_tag",
    ),
}
NOT_APPLICABLE = {check: reason for reason, checks in NOT_APPLICABLE_BY_REASON.items() for check in checks}

#: Every registered method with its defaults, compositions (:class:`hitbench.methods.compose.Preprocessed`) included.
ESTIMATORS = [registry.get(name) for name in registry.names()]


def _check_name(check: Callable) -> str:
    while isinstance(check, partial):
        check = check.func
    return check.__name__


def _applicable_checks() -> Iterator[object]:
    for estimator in ESTIMATORS:
        for instance, check in estimator_checks_generator(estimator):
            if _check_name(check) not in NOT_APPLICABLE:
                yield pytest.param(instance, check, id=f"{type(estimator).__name__}-{_check_name(check)}")


@pytest.mark.parametrize(("estimator", "check"), list(_applicable_checks()))
def test_sklearn_estimator_checks(estimator: object, check: Callable) -> None:
    check(estimator)


def test_every_check_left_out_is_one_scikit_learn_has() -> None:
    generated = {_check_name(check) for estimator in ESTIMATORS for _, check in estimator_checks_generator(estimator)}
    assert set(NOT_APPLICABLE) <= generated, set(NOT_APPLICABLE) - generated
