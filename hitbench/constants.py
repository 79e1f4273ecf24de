"""Physical constants and the photon energy <-> wavelength conversion, from :mod:`scipy.constants`."""

from __future__ import annotations

from scipy.constants import angstrom, c, e, h

#: Joules per electronvolt (the elementary charge): CXI files store the photon energy in J.
JOULE_PER_EV = e

#: h·c/e in eV·Å: a photon's energy in eV times its wavelength in Å.
HC_EV_ANGSTROM = h * c / e / angstrom


def wavelength_angstrom(photon_energy_ev: float) -> float:
    """The wavelength of a photon of the given energy.

    Parameters
    ----------
    photon_energy_ev : float
        Photon energy, eV.

    Returns
    -------
    float
        Wavelength, Å.
    """
    return HC_EV_ANGSTROM / photon_energy_ev


def photon_energy_ev(wavelength: float) -> float:
    """The energy of a photon of the given wavelength.

    Parameters
    ----------
    wavelength : float
        Wavelength, Å.

    Returns
    -------
    float
        Photon energy, eV.
    """
    return HC_EV_ANGSTROM / wavelength
