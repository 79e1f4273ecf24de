"""TensorFlow for the cnn: imported lazily and quietly.

TensorFlow is imported only when a network is built or trained (:func:`keras`), never at module
import, so listing methods or using the other methods stays light. At that first import
``TF_CPP_MIN_LOG_LEVEL`` is set to 3 (TensorFlow's C++ log lines: device notices, tf.data
notices) unless the user has set it, and ``TF_ENABLE_ONEDNN_OPTS`` to 1 unless the user has set it: TensorFlow
switches its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI, BF16 or AMX, and without them its
convolutions are Eigen's (on a 2-core AMD EPYC with AVX2, the Table I network's first convolution took 9.3 ms a
350x350 frame forward and 30.8 forward and backward, against 1.1 and 6.1 with oneDNN; hitbench's training step
8.5 against 5.5 ms a frame). TensorFlow 2.21 also prints a few lines while it loads and
looks for devices, before its logging reads that setting (the oneDNN notice, "Could not find cuda
drivers", the CPU-instructions notice, a failed ``cuInit`` on a machine without a GPU): while the
import and the device search run, standard error goes to a temporary file, and afterwards
everything in it except those notices is written back, so what other threads wrote meanwhile is
delayed, never lost (and a user who sets ``TF_CPP_MIN_LOG_LEVEL=0`` sees every line). Nothing
else of the process is touched: no global random generator is seeded (the network seeds its own
layers and batches) and TensorFlow's op determinism is left as the user set it (switched on, it
would refuse the user's own unseeded random ops).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

#: An absl INFO log record (``I0000 00:00:1796212038.448  123 port.cc:153] ...``).
_INFO_RECORD = re.compile(rb"I\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
#: Other lines dropped while TensorFlow loads: absl's note that logging is not set up yet, the second line of
#: the CPU-instructions notice, and the failed ``cuInit`` of a machine without a GPU.
_LOAD_NOTICES = (
    b"WARNING: All log messages before absl::InitializeLog()",
    b"To enable the following instructions:",
    b"failed call to cuInit",
)


def keras() -> ModuleType:
    """Keras on TensorFlow, imported (the first time) with TensorFlow's C++ logging quiet.

    Returns
    -------
    module
        ``keras``, with hitbench's layers (:mod:`hitbench.methods.cnn_layers`) registered.
    """
    if "hitbench.methods.cnn_layers" not in sys.modules:
        set_environment()
        with _load_notices_dropped(quiet=os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0"):
            import tensorflow as tf

            import hitbench.methods.cnn_layers  # noqa: F401  (registers the network's layers for loading)

            tf.config.list_physical_devices()  # the device search, with its notices, happens here
    import keras

    return keras


def set_environment() -> None:
    """TensorFlow's settings hitbench loads it with, where the user has not set them (it reads them at import).

    ``TF_CPP_MIN_LOG_LEVEL=3`` and ``TF_ENABLE_ONEDNN_OPTS=1`` (see the module's docstring). :func:`keras` calls
    it; a program that imports TensorFlow itself before calling :func:`keras` calls it first to get the same
    kernels (the test suite does, in tests/conftest.py).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


@contextmanager
def _load_notices_dropped(quiet: bool) -> Iterator[None]:
    """Standard error (fd 2) written back without TensorFlow's load-time notices once the block ends."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            os.write(2, _without_load_notices(captured.read()))


def _without_load_notices(text: bytes) -> bytes:
    """``text`` less TensorFlow's load-time notices: INFO records and the lines of :data:`_LOAD_NOTICES`."""
    lines = text.splitlines(keepends=True)
    return b"".join(
        line for line in lines if not _INFO_RECORD.match(line) and not any(n in line for n in _LOAD_NOTICES)
    )
