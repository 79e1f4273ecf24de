"""The CPU target of hitbench's compiled kernels (numba): 512-bit vectors on CPUs with AVX-512.

LLVM compiles for Intel's AVX-512 CPUs with a preference for 256-bit vectors (its tuning flag
``prefer-256-bit``, set for Skylake-SP, whose clock dropped under 512-bit instructions). hitbench's kernels
are long vectorised loops over pixels (the cnn's 7x7 convolutions, the robust preprocessing, the peak
finder's and the simulator's passes), which the development machine (an AVX-512 Xeon) runs faster with
the whole vector width: docs/speed.md gives the figures. :func:`use_wide_vectors` drops that preference
for numba before it compiles anything in the process: kernel modules are imported through :func:`kernels`,
which calls it, when a kernel first runs (importing a hitbench module changes nothing).

It changes numba's target for the whole process (``numba.config.CPU_FEATURES``: the host's features, less
the preference), so numba functions of the user's own compiled afterwards get it too. Nothing is changed
where the user chose numba's target (``NUMBA_CPU_NAME`` or ``NUMBA_CPU_FEATURES``) or on a CPU without
AVX-512; numba fixes its target at its first compilation in a process, so where the user's own numba code
compiled first, the kernels keep numba's default. Results are the same: a vectorised loop does the same
arithmetic on each lane whatever the width, and the outputs the tests pin (``tests/data/golden_*``: peaks,
spot maps and simulated frames to the bit, cnn scores within 1e-6) are reproduced either way; only the
preprocessing's float64 sums, which it lets numba reorder, can differ in their last bits.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

#: LLVM's tuning flag, as a feature to remove: vectorise with the CPU's widest vectors.
WIDE_VECTORS = "-prefer-256-bit"


@functools.cache  # once per process
def use_wide_vectors() -> None:
    """Let numba use 512-bit vectors where the CPU has AVX-512 and the user left numba's target alone."""
    import numba  # here, not at import: importing hitbench never imports numba
    from numba.core import codegen

    config = numba.config
    if config.CPU_NAME is not None or config.CPU_FEATURES is not None:
        return  # the user's choice, or already set
    features = codegen.get_host_cpu_features()
    if "+avx512f" in features.split(","):
        config.CPU_FEATURES = f"{features},{WIDE_VECTORS}"


def kernels(module: str) -> ModuleType:
    """A kernel module (``"hitbench.peaks._kernels"``), imported once :func:`use_wide_vectors` has run.

    Parameters
    ----------
    module : str
        The module's full name.

    Returns
    -------
    module
    """
    use_wide_vectors()
    return importlib.import_module(module)
