"""The detector geometry of a run, shared by every file format and the simulator."""

from __future__ import annotations

from dataclasses import dataclass

from scipy.constants import angstrom

from hitbench.constants import wavelength_angstrom

#: Side of the square crop around the beam that the methods see, pixels (the reference study's 350 x 350).
CROP_SIZE = 350


@dataclass(frozen=True)
class Geometry:
    """Detector geometry of a run.

    Parameters
    ----------
    distance : float
        Sample-detector distance (camera length), metres.
    x_pixel_size, y_pixel_size : float
        Pixel pitch, metres.
    photon_energy : float
        Photon energy, eV.
    """

    distance: float
    x_pixel_size: float
    y_pixel_size: float
    photon_energy: float

    @property
    def wavelength(self) -> float:
        """Wavelength in metres."""
        return wavelength_angstrom(self.photon_energy) * angstrom
