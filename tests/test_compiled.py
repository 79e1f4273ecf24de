"""The compiled kernels' CPU target: 512-bit vectors where the CPU has AVX-512, unless the user chose numba's target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from hitbench.compiled import WIDE_VECTORS, kernels

# a fresh process: numba fixes its target at its first compilation
_PROBE = """
import json
import numba
from numba.core import codegen
from hitbench.compiled import kernels
before = numba.config.CPU_FEATURES
kernels("hitbench.peaks._kernels")
print(json.dumps({"host": codegen.get_host_cpu_features(), "before": before, "after": numba.config.CPU_FEATURES,
                  "name": numba.config.CPU_NAME}))
"""


def _probe(**numba_env: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")} | numba_env
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_kernels_get_wide_vectors_on_avx512_only_where_the_user_left_numbas_target_alone() -> None:
    plain = _probe()
    assert plain["before"] is None
    if "+avx512f" in plain["host"].split(","):
        assert plain["after"] == f"{plain['host']},{WIDE_VECTORS}"
    else:
        assert plain["after"] is None
    for chosen in (_probe(NUMBA_CPU_NAME="generic"), _probe(NUMBA_CPU_FEATURES=plain["host"])):
        assert chosen["after"] == chosen["before"]  # left as the user set it
        assert WIDE_VECTORS not in (chosen["after"] or "")


def _network_inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Frames and Table I weights as :func:`hitbench.methods.cnn_network.inference_weights` gives them (random)."""

    def weights(*shape: int) -> np.ndarray:
        return (0.1 * rng.normal(size=shape)).astype(np.float32)

    frames = (28 * rng.poisson(0.3, (8, 350, 350))).astype(np.float32)
    return {
        "frames": frames,
        "k1": weights(7, 7, 1, 4), "b1": weights(4), "s1": 1 + weights(344), "t1": weights(344),
        "k2": weights(7, 7, 4, 4), "b2": weights(4), "s2": 1 + weights(62), "t2": weights(62),
        "w3": weights(576, 16), "b3": weights(16), "w4": weights(16, 2), "b4": weights(2),
    }  # fmt: skip


def _scores(arrays: dict[str, np.ndarray]) -> np.ndarray:
    arrays = dict(arrays)
    frames = arrays.pop("frames")
    out, nonfinite = np.empty(len(frames), np.float32), np.empty(len(frames), np.bool_)
    kernels("hitbench.methods._cnn_kernel").score_frames(frames, True, **arrays, out=out, nonfinite=nonfinite)
    return out


def test_cnn_scores_are_the_same_on_numbas_default_target(tmp_path) -> None:
    """The cnn's compiled pass in this process (wide vectors on an AVX-512 CPU) and in one on numba's default
    target: the same scores to the bit."""
    arrays = _network_inputs(np.random.default_rng(3))
    np.savez(tmp_path / "inputs.npz", **arrays)
    script = (
        "import sys, numpy as np; from tests.test_compiled import _scores; "
        "np.save(sys.argv[2], _scores(dict(np.load(sys.argv[1]))))"
    )
    host = _probe()["host"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")} | {"NUMBA_CPU_FEATURES": host}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "inputs.npz"), str(tmp_path / "scores.npy")],
        env=env,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    here = _scores(arrays)
    assert np.ptp(here) > 0  # real, varying scores
    np.testing.assert_array_equal(np.load(tmp_path / "scores.npy"), here)
