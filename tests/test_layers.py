"""Importing hitbench changes nothing in the process: umask, environment, warnings, signals, matplotlib backend.

The import contracts (the layers of docs/architecture.md) are checked by ``lint-imports`` in CI.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# TensorFlow sets environment variables and warning filters when it is imported: that is its own doing, so it is
# imported before the state is read (hitbench imports it only where a network is built).
_PROBE = """
import importlib, json, os, pkgutil, signal, warnings

import keras, matplotlib, tensorflow

import hitbench

def state():
    umask = os.umask(0o022)
    os.umask(umask)
    return {
        "umask": umask,
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "warnings": [repr(f) for f in warnings.filters],
        "signals": {s.name: repr(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)},
        "matplotlib backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),  # as set, not resolved
    }

before = state()
names = [m.name for m in pkgutil.walk_packages(hitbench.__path__, "hitbench.")]
for name in names:
    importlib.import_module(name)
after = state()
changed = sorted(key for key in before if before[key] != after[key])
print(json.dumps({"modules": len(names), "changed": changed}))
"""


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_importing_every_module_changes_no_process_state() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["modules"] > 30
    assert report["changed"] == []
