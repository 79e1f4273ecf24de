"""hitbench: hit finding for serial crystallography, compared honestly."""

from importlib.metadata import PackageNotFoundError, version

from hitbench.errors import HitbenchError

try:
    __version__ = version("hitbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["HitbenchError", "__version__"]
