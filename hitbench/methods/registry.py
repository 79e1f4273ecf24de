"""Find hit-finding methods through the ``hitbench.methods`` entry-point group.

A method is registered by declaring an entry point, e.g. in a package's setup.cfg::

    [options.entry_points]
    hitbench.methods =
        mymethod = mypackage.mymodule:MyMethod
        mymethod-robust = mypackage.mymodule:my_method_robust

An entry names an estimator class (built with its defaults) or a factory: a function that takes
no arguments and returns a configured estimator, e.g. a composition such as
:func:`hitbench.methods.robust.cnn_robust`. Either way :func:`get` sets the given parameters on
the built estimator with scikit-learn's ``set_params``, so nested parameters of a composition
(``method__epochs``, ``preprocess__gate``) work as plain ones do.

Entry points are resolved lazily: listing names and descriptions imports each method's
module, which must not import heavy libraries (TensorFlow) at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from hitbench.errors import HitbenchError

GROUP = "hitbench.methods"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    """Registered method names, sorted.

    Returns
    -------
    list of str
        The names usable with :func:`get`.
    """
    return sorted(_entry_points())


def load(name: str) -> Callable[[], Any]:
    """What is registered under ``name``: an estimator class or a factory of a configured estimator.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"intensity"``.

    Returns
    -------
    callable
        Called with no arguments, it gives the method with its registered defaults.
    """
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none (is hitbench installed?)"
        raise HitbenchError(f"unknown method '{name}'; known methods: {known}")
    try:
        return eps[name].load()
    except Exception as exc:  # a broken third-party plugin must not hide the others
        raise HitbenchError(f"method '{name}' ({eps[name].value}) failed to load: {exc}") from None


def get(name: str, **params: object) -> Any:
    """An unfitted instance of the method ``name`` with the given parameters.

    Parameters
    ----------
    name : str
        Registry name.
    **params
        Parameters of the method, nested ones of a composition included (``method__epochs``),
        as scikit-learn's ``set_params`` takes them.

    Returns
    -------
    HitMethod
        The estimator.
    """
    entry = load(name)
    try:
        estimator = entry()
    except Exception as exc:  # a broken third-party factory must not hide the others
        raise HitbenchError(f"method '{name}' could not be built: {type(exc).__name__}: {exc}") from None
    try:
        return estimator.set_params(**params) if params else estimator
    except ValueError as exc:
        known = ", ".join(estimator.get_params())
        raise HitbenchError(f"method '{name}': bad parameter ({exc}); its parameters are {known}") from None


def parameters(name: str) -> dict[str, object]:
    """The parameters of the method ``name`` and their registered defaults, nested ones included.

    Parameters
    ----------
    name : str
        Registry name.

    Returns
    -------
    dict
        Parameter name to default value; estimators inside a composition (``method``, ``preprocess``)
        are left out, their own parameters are listed (``method__epochs``).
    """
    from hitbench.methods.base import leaf_params

    return leaf_params(get(name))


def describe(name: str) -> str:
    """One-line description of a method: the first line of its class's or factory's docstring.

    Parameters
    ----------
    name : str
        Registry name.

    Returns
    -------
    str
        The description.
    """
    doc = (load(name).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
