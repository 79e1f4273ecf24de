"""The cnn's ``.keras`` file: a Keras archive of the network that is also a hitbench model file.

:func:`save_keras` writes Keras's own archive of the trained network (``keras.saving.load_model``
reads it, with :mod:`hitbench.methods.cnn_layers` imported) and adds to it the entries of a
hitbench model file (:mod:`hitbench.modelfile`): the registry name, parameters and fitted state of
the whole method, e.g. ``cnn-robust`` with its preprocessing. hitbench reads such a file as any
model file (:func:`hitbench.modelfile.load_model`, ``hitbench predict``): the method is built from
its registry entry and the network from its parameters; the archive's Keras configuration is never
read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hitbench.errors import HitbenchError
from hitbench.methods.cnn import ReferenceCNN
from hitbench.modelfile import save_model


def save_keras(method: Any, path: str | os.PathLike, *, name: str = "") -> Path:
    """Write a fitted cnn, or a composition around one (``cnn-robust``), to one ``.keras`` file.

    Parameters
    ----------
    method : HitMethod
        A fitted :class:`~hitbench.methods.cnn.ReferenceCNN`, or a method whose fitted ``method_``
        is one (:class:`~hitbench.methods.compose.Preprocessed`).
    path : path-like
        Destination; must end in ``.keras``. Written to a temporary name, then renamed.
    name : str
        The method's registry name (default: its class's ``name``, "cnn" for the cnn itself).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise HitbenchError(f"{path}: a .keras model file must end in .keras; rename the output")
    network = method
    while not isinstance(network, ReferenceCNN):
        network = getattr(network, "method_", None)
        if network is None:
            raise HitbenchError(
                f"{path}: {type(method).__name__} holds no fitted cnn network to save as .keras; save it as a "
                "hitbench model file (.hbm, hitbench.modelfile.save_model)"
            )
    if not hasattr(network, "model_"):
        raise HitbenchError(f"{path}: the cnn is not fitted; call fit(frames, labels) before saving it")
    return save_model(method, path, name=name, base=lambda tmp: network.model_.save(tmp))
