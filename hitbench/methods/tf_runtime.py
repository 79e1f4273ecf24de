"""TensorFlow for the cnn: imported lazily and quietly; the cores this process may use.

TensorFlow is imported only when a network is built or trained (:func:`keras`), never at module
import, so listing methods or using the other methods stays light. At that first import
``TF_CPP_MIN_LOG_LEVEL`` is set to 3 (TensorFlow's C++ log lines: device notices, tf.data
notices, a failed ``cuInit`` on a machine without a GPU) unless the user has set it. Nothing
else of the process is touched: standard error is never redirected, no global random generator
is seeded (the network seeds its own layers and batches) and TensorFlow's op determinism is left
as the user set it (switched on, it would refuse the user's own unseeded random ops). TensorFlow 2.21 prints a few
lines while it loads, before its logging is configured (the oneDNN notice, "Could not find cuda
drivers"); ``TF_CPP_MIN_LOG_LEVEL`` cannot silence those.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType


def keras() -> ModuleType:
    """Keras on TensorFlow, imported (the first time) with TensorFlow's C++ logging quiet.

    Returns
    -------
    module
        ``keras``, with hitbench's layers (:mod:`hitbench.methods.cnn_layers`) registered.
    """
    if "hitbench.methods.cnn_layers" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import hitbench.methods.cnn_layers  # noqa: F401  (registers the network's layers for loading)
    import keras

    return keras


def n_cores() -> int:
    """The CPU cores this process may run on.

    Returns
    -------
    int
        At least 1.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
