"""TensorFlow for the cnn: imported lazily and quietly.

TensorFlow is imported only when a network is built or trained (:func:`keras`), never at module
import, so listing methods or using the other methods stays light. At that first import
``TF_CPP_MIN_LOG_LEVEL`` is set to 3 (TensorFlow's C++ log lines: device notices, tf.data
notices, a failed ``cuInit`` on a machine without a GPU) unless the user has set it. TensorFlow
2.21 also prints a few INFO lines while it loads, before its logging reads that setting (the
oneDNN notice, "Could not find cuda drivers"): while the import runs, standard error goes to a
temporary file, and afterwards everything in it except those lines is written back, so what
other threads wrote meanwhile is delayed, never lost (and a user who sets ``TF_CPP_MIN_LOG_LEVEL=0``
sees every line). Nothing else of the process is touched: no global random generator is seeded
(the network seeds its own layers and batches) and TensorFlow's op determinism is left as the
user set it (switched on, it would refuse the user's own unseeded random ops).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

#: TensorFlow's load-time notices: absl INFO lines (``I0000 00:00:...  123 port.cc:153] ...``) and absl's
#: warning that they come before its logging is set up.
_LOAD_NOTICE = re.compile(
    rb"I\d{4} [\d:.]+ +\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\)"
)


def keras() -> ModuleType:
    """Keras on TensorFlow, imported (the first time) with TensorFlow's C++ logging quiet.

    Returns
    -------
    module
        ``keras``, with hitbench's layers (:mod:`hitbench.methods.cnn_layers`) registered.
    """
    if "hitbench.methods.cnn_layers" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with _load_notices_dropped(quiet=os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0"):
            import hitbench.methods.cnn_layers  # noqa: F401  (registers the network's layers for loading)
    import keras

    return keras


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
            kept = [line for line in captured.read().splitlines(keepends=True) if not _LOAD_NOTICE.match(line)]
            os.write(2, b"".join(kept))
