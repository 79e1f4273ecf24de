"""Model files that cannot run code when they are read: hitbench's own format (``.hbm``).

``pickle`` and ``joblib.load`` run whatever a file tells them to, so a model file someone sent, or one in a
shared cache, could run a shell command. A hitbench model file is a zip archive holding

- ``model.json``: the format tag and version, the method's registry name, its parameters (nested
  ones of a composition by their full names, ``method__epochs``), the classes of the estimators inside
  it, its fitted state and any record fields (fit time, training size) as JSON;
- ``arrays/N.npy``: one NumPy array per array of the state, read with ``allow_pickle=False``.

Reading one imports nothing the file names. The method is built from its registry entry (installed code,
a class or a factory), with its parameters, and its fitted state set back; a composition whose parts are
not those its entry builds is refused. Objects inside the state (the svm's scikit-learn
pipeline: Pipeline, FunctionTransformer, StandardScaler, PCA, SVC and the function ``max_pool``) are
written as their class name and attributes and rebuilt only when the method's class lists that class in
:attr:`hitbench.methods.base.HitMethod.saved_types`; a file naming any other class is refused. The cnn
keeps its Keras weights as arrays and rebuilds its network from its parameters, so no Keras configuration
is deserialised either.

Loading a model file therefore runs only hitbench's and scikit-learn's own code on numbers and strings.
"""

from __future__ import annotations

import json
import types
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hitbench import __version__
from hitbench.atomic import atomic_write
from hitbench.errors import HitbenchError

FORMAT = "hitbench-model"
VERSION = 1
SUFFIX = ".hbm"
_JSON = "model.json"
_PRIMITIVES = (bool, int, float, str, type(None))


def _name(kind: object) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


class _Encoder:
    """Turn a state into JSON-ready values, collecting its arrays; only the given object types are written."""

    def __init__(self, types: tuple) -> None:
        self.types = {_name(kind): kind for kind in types}
        self.arrays: list[np.ndarray] = []

    def _array(self, value: np.ndarray) -> int:
        if value.dtype.hasobject:
            raise HitbenchError("model state holds an array of Python objects; a model file stores numbers only")
        self.arrays.append(value)
        return len(self.arrays) - 1

    def encode(self, value: object) -> object:
        if type(value) in _PRIMITIVES:
            return value
        if isinstance(value, np.ndarray):
            return {"array": self._array(value)}
        if isinstance(value, np.generic):
            return {"scalar": self._array(np.asarray(value))}
        if type(value) in (list, tuple):
            return {type(value).__name__: [self.encode(item) for item in value]}
        if type(value) is dict:
            return {"dict": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        function = isinstance(value, types.FunctionType)
        name = _name(value if function else type(value))
        if self.types.get(name) is not (value if function else type(value)):
            raise HitbenchError(f"model state holds {name}, which the method does not list in saved_types")
        if function:
            return {"function": name}
        state = value.__getstate__() if hasattr(value, "__getstate__") else vars(value)
        return {"object": name, "state": self.encode(dict(state))}


class _Decoder:
    """The inverse of :class:`_Encoder`: builds only the given object types, reads arrays without pickle."""

    def __init__(self, types: tuple, arrays: Mapping[int, np.ndarray]) -> None:
        self.types = {_name(kind): kind for kind in types}
        self.arrays = arrays

    def _kind(self, name: object) -> Any:
        if name not in self.types:
            raise HitbenchError(f"names {name!r}, a type this method does not store; refused (it may be crafted)")
        return self.types[name]

    def decode(self, value: object) -> object:
        if type(value) in _PRIMITIVES:
            return value
        if not (isinstance(value, dict) and value):
            raise HitbenchError(f"unexpected {type(value).__name__} in the state")
        tag = next(iter(value))
        item = value[tag]
        if tag == "array":
            return self.arrays[item]
        if tag == "scalar":
            return self.arrays[item][()]
        if tag in ("list", "tuple"):
            items = [self.decode(v) for v in item]
            return items if tag == "list" else tuple(items)
        if tag == "dict":
            return {self.decode(k): self.decode(v) for k, v in item}
        if tag == "function":
            return self._kind(item)
        if tag == "object":
            kind = self._kind(item)
            obj = kind.__new__(kind)
            state = self.decode(value["state"])
            if hasattr(obj, "__setstate__"):
                obj.__setstate__(state)
            else:
                vars(obj).update(state)
            return obj
        raise HitbenchError(f"unknown entry {tag!r} in the state")


def _parts(method: Any) -> dict[str, str]:
    """The classes of the estimators inside a method (a composition's ``method`` and ``preprocess``)."""
    return {key: _name(type(value)) for key, value in method.get_params().items() if hasattr(value, "get_params")}


def save_model(
    method: Any,
    path: str | Path,
    record: Mapping[str, object] | None = None,
    *,
    name: str = "",
    base: Callable[[Path], None] | None = None,
) -> Path:
    """Write a fitted hitbench method to a model file (whole or not at all).

    Parameters
    ----------
    method : HitMethod
        A fitted method, built by the registry entry ``name``.
    path : str or Path
        Destination (``.hbm`` by convention).
    record : mapping, optional
        Extra JSON-able fields kept beside the model (``hitbench compare`` keeps fit time and training size).
    name : str
        The method's registry name (default: its class's ``name``); the file names it, and reading the
        file builds the method from that entry.
    base : callable, optional
        Writes a zip archive to the path it is given, to which the model's entries are added (the cnn's
        ``.keras`` file: the Keras archive); the file keeps the suffix of ``path``.

    Returns
    -------
    Path
        The written file.
    """
    from hitbench.methods import registry
    from hitbench.methods.base import leaf_params

    path = Path(path)
    name = name or type(method).name
    parts = _parts(method)
    registered = registry.get(name) if name in registry.names() else None
    if registered is None or type(registered) is not type(method) or _parts(registered) != parts:
        raise HitbenchError(
            f"{path}: this {type(method).__name__} is not what the method registered as {name!r} builds; only "
            "registered methods are saved: give save_model(name=...) the entry it came from, or register it "
            "under the entry-point group hitbench.methods"
        )
    encoder = _Encoder(method.saved_types)
    try:
        content = {
            "format": FORMAT,
            "version": VERSION,
            "hitbench_version": __version__,
            "method": name,
            "params": encoder.encode(leaf_params(method)),
            "parts": parts,
            "state": encoder.encode(method._saved_state()),
            "record": encoder.encode(dict(record or {})),
        }
    except HitbenchError as exc:
        raise HitbenchError(f"{path}: cannot save the {name} model: {exc}") from None

    def write(tmp: Path) -> None:
        if base is not None:
            base(tmp)
        with zipfile.ZipFile(tmp, "w" if base is None else "a") as archive:
            archive.writestr(_JSON, json.dumps(content))
            for index, array in enumerate(encoder.arrays):
                with archive.open(f"arrays/{index}.npy", "w", force_zip64=True) as file:
                    np.lib.format.write_array(file, np.asarray(array), allow_pickle=False)

    atomic_write(path, write, suffix=path.suffix)
    return path


def is_model_file(path: str | Path) -> bool:
    """Whether ``path`` is a hitbench model file (a zip archive with ``model.json``).

    Parameters
    ----------
    path : str or Path
        Any file.

    Returns
    -------
    bool
        True for a model file (it may still be damaged).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return _JSON in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _read(path: Path) -> tuple[dict, zipfile.ZipFile]:
    try:
        archive = zipfile.ZipFile(path)
        content = json.loads(archive.read(_JSON))
    except FileNotFoundError:
        raise HitbenchError(f"{path}: no such model file") from None
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:
        raise HitbenchError(f"{path}: not a readable hitbench model file ({exc}); save it again") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        archive.close()
        raise HitbenchError(f"{path}: not a hitbench model file")
    if content.get("version") != VERSION:
        archive.close()
        raise HitbenchError(
            f"{path}: model file version {content.get('version')} (hitbench {content.get('hitbench_version')}); "
            f"this hitbench reads version {VERSION}: save the model again with this hitbench"
        )
    return content, archive


def read_record(path: str | Path) -> dict:
    """The record fields saved beside a model, without building the model.

    Parameters
    ----------
    path : str or Path
        A model file.

    Returns
    -------
    dict
        The ``record`` given to :func:`save_model` (arrays not included).
    """
    path = Path(path)
    content, archive = _read(path)
    archive.close()
    try:
        return _Decoder((), {}).decode(content["record"])
    except (HitbenchError, KeyError, TypeError, ValueError) as exc:
        raise HitbenchError(f"{path}: damaged model record ({exc}); save the model again") from None


def load_model(path: str | Path) -> Any:
    """Read a fitted method from a model file written by :func:`save_model`; runs no code the file names.

    Parameters
    ----------
    path : str or Path
        The model file.

    Returns
    -------
    HitMethod
        The fitted method.
    """
    from hitbench.methods import registry

    path = Path(path)
    content, archive = _read(path)
    with archive:
        try:
            names = archive.namelist()
            arrays = {}
            for index in range(sum(n.startswith("arrays/") for n in names)):
                with archive.open(f"arrays/{index}.npy") as file:
                    arrays[index] = np.lib.format.read_array(file, allow_pickle=False)
            method = registry.get(str(content["method"]), **_Decoder((), arrays).decode(content["params"]))
            if _parts(method) != content.get("parts", {}):
                raise HitbenchError(
                    f"its parts {content.get('parts')} are not those of the method {content['method']!r} "
                    "(saved by another hitbench?); save the model again"
                )
            method._restore_state(_Decoder(method.saved_types, arrays).decode(content["state"]))
        except HitbenchError as exc:
            raise HitbenchError(f"{path}: {exc}") from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OSError, zipfile.BadZipFile) as exc:
            raise HitbenchError(
                f"{path}: damaged hitbench model file ({type(exc).__name__}: {exc}); save the model again"
            ) from None
    return method
