"""Find hit-finding methods through the ``hitbench.methods`` entry-point group.

A method is registered by declaring an entry point, e.g. in a package's setup.cfg::

    [options.entry_points]
    hitbench.methods =
        mymethod = mypackage.mymodule:MyMethod

Entry points are resolved lazily: listing names and descriptions imports each method's
module, which must not import heavy libraries (TensorFlow) at module level.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

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


def get_class(name: str) -> type:
    """The estimator class registered under ``name``.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"intensity"``.

    Returns
    -------
    type
        The method's class (not instantiated).
    """
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none (is hitbench installed?)"
        raise HitbenchError(f"unknown method '{name}'; known methods: {known}")
    try:
        return eps[name].load()
    except Exception as exc:  # a broken third-party plugin must not hide the others
        raise HitbenchError(f"method '{name}' ({eps[name].value}) failed to load: {exc}") from None


def get(name: str, **params: object):
    """An unfitted instance of the method ``name`` with the given parameters.

    Parameters
    ----------
    name : str
        Registry name.
    **params
        Constructor parameters of the method.

    Returns
    -------
    HitMethod
        The estimator.
    """
    cls = get_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise HitbenchError(
            f"method '{name}': bad parameter ({exc}); see `hitbench methods` for its parameters"
        ) from None


def describe(name: str) -> str:
    """One-line description of a method: the first line of its class docstring.

    Parameters
    ----------
    name : str
        Registry name.

    Returns
    -------
    str
        The description.
    """
    doc = (get_class(name).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
