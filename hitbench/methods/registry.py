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
module, which must not import heavy libraries (TensorFlow) at module level. Importing the methods
still takes scikit-learn (about a second), so :func:`catalogue`, what ``hitbench methods`` shows, is
kept beside this module like Python's bytecode and used only while nothing it was built from has
changed (see :func:`catalogue`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, NamedTuple

from hitbench.atomic import atomic_write
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


class Listing(NamedTuple):
    """A registered method as ``hitbench methods`` lists it."""

    name: str
    #: The first line of its docstring, or the one-line error of a method that does not load.
    description: str
    #: Its parameters' defaults as ``repr`` text (see :func:`parameters`); None when it does not load.
    parameters: dict[str, str] | None


def catalogue() -> list[Listing]:
    """Every registered method with its description and parameter defaults, or why it does not load.

    Building the list imports every method (and so scikit-learn and whatever they import). It is kept
    in ``__pycache__`` beside this module, as Python keeps bytecode, and used only while everything it
    was built from is as it was then: the interpreter, ``sys.path`` and the modification time and size of
    each folder on it (a package installed or removed), the entry points of the group with their
    distributions' versions, and the modification time and size of every module file loaded when it was
    built (hitbench's, the plugins' and their libraries'). Anything else rebuilds it. A list in which a
    method failed to load is not kept, so a plugin fixed shows at once. A cache that cannot be written
    (a read-only installation) is simply not kept.

    Returns
    -------
    list of Listing
        By name.
    """
    key = _catalogue_key()
    path = _catalogue_path()
    try:
        kept = json.loads(path.read_text())
        if kept["key"] == key and all(_stamp(file) == stamp for file, stamp in kept["files"]):
            return [Listing(name, description, params) for name, description, params in kept["listings"]]
    except (OSError, ValueError, KeyError, TypeError):  # none kept yet, or unreadable: built anew
        pass
    listings = []
    for name in names():
        try:
            params = {param: repr(value) for param, value in parameters(name).items()}
            listings.append(Listing(name, describe(name), params))
        except HitbenchError as exc:  # one broken plugin must not hide the others
            listings.append(Listing(name, str(exc), None))
    if all(listing.parameters is not None for listing in listings):
        loaded = {getattr(module, "__file__", None) for module in list(sys.modules.values())}
        files = sorted(file for file in loaded if isinstance(file, str))
        record = {"key": key, "files": [[file, _stamp(file)] for file in files], "listings": listings}
        try:
            atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record)))
        except (OSError, HitbenchError):
            pass
    return listings


def _catalogue_key() -> dict[str, object]:
    """What the catalogue depends on besides its modules' files: interpreter, search path, entry points."""
    points = sorted(
        (ep.name, ep.value, ep.dist.name if ep.dist else "", ep.dist.version if ep.dist else "")
        for ep in entry_points(group=GROUP)
    )
    return {
        "python": [sys.executable, sys.version],
        "path": [[folder, _stamp(folder or ".")] for folder in sys.path],
        "entry_points": [list(point) for point in points],
    }


def _catalogue_path() -> Path:
    """The kept catalogue of this interpreter (one file per environment, as bytecode is one per version)."""
    digest = hashlib.sha256(f"{sys.prefix}\0{sys.version}".encode()).hexdigest()[:16]
    return Path(__file__).parent / "__pycache__" / f"catalogue-{digest}.json"


def _stamp(path: str) -> list[int] | None:
    """Modification time and size of a file or folder, None when it is missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_mtime_ns, stat.st_size]
