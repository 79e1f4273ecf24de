"""Physics of a still serial-crystallography frame: lattice, Ewald sphere, spots, background, detector.

Conventions: the beam travels along +z; a pixel at column ``x`` and row ``y`` of the crop (pixel centres at
integer coordinates, 0-based, as Cheetah's peakXPosRaw/peakYPosRaw) sits at laboratory position
``((x - cx) p, (y - cy) p, D)`` for beam centre ``(cx, cy)``, pixel size ``p`` and distance ``D``. Reciprocal
vectors are in 1/Å with no 2π; the scattering vector of a reflection is ``s = U B h`` and it is recorded when
``|s + k| ≈ |k|`` with ``k = (0, 0, 1/λ)``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

#: A spot counts as detectable when its expected photons reach this many standard deviations of the
#: background (Poisson background plus readout noise) in the 3x3 box around it, and at least this many photons.
DETECTABLE_SIGMA = 5.0


def reciprocal_basis(cell: tuple[float, float, float, float, float, float]) -> np.ndarray:
    """Reciprocal basis B (columns a*, b*, c*, 1/Å) of a unit cell, in the Busing-Levy orientation.

    Parameters
    ----------
    cell : tuple of float
        a, b, c (Å), alpha, beta, gamma (degrees).

    Returns
    -------
    numpy.ndarray, shape (3, 3)
        ``s = B @ hkl`` is the scattering vector of reflection hkl for the identity orientation.
    """
    a, b, c = cell[:3]
    al, be, ga = np.radians(cell[3:])
    ca, cb, cg, sg = np.cos(al), np.cos(be), np.cos(ga), np.sin(ga)
    volume = a * b * c * np.sqrt(1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg)
    real = np.array(
        [
            [a, b * cg, c * cb],
            [0.0, b * sg, c * (ca - cb * cg) / sg],
            [0.0, 0.0, volume / (a * b * sg)],
        ]
    )
    return np.linalg.inv(real).T


def reflections(basis: np.ndarray, d_min: float) -> np.ndarray:
    """All reflections hkl (except 000) with d-spacing >= ``d_min``.

    Parameters
    ----------
    basis : numpy.ndarray, shape (3, 3)
        Reciprocal basis from :func:`reciprocal_basis`.
    d_min : float
        Highest resolution, Å.

    Returns
    -------
    numpy.ndarray, shape (m, 3), int
    """
    real = np.linalg.inv(basis).T
    limits = [int(np.ceil(np.linalg.norm(real[:, i]) / d_min)) for i in range(3)]
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in limits], indexing="ij")
    hkl = np.stack([g.ravel() for g in grids], axis=1)
    s = np.linalg.norm(hkl @ basis.T, axis=1)
    return hkl[(s > 0) & (s <= 1.0 / d_min)]


def pixel_resolution(
    shape: tuple[int, int], centre: tuple[float, float], pixel_size: float, distance: float, wavelength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel 1/d (1/Å) and solid angle relative to the beam centre pixel (cos³ 2θ).

    Parameters
    ----------
    shape : tuple of int
        (H, W) of the crop.
    centre : tuple of float
        Beam centre (x, y), pixels.
    pixel_size, distance : float
        Metres.
    wavelength : float
        Å.

    Returns
    -------
    inv_d, solid_angle : numpy.ndarray, shape (H, W)
    """
    y, x = np.indices(shape, dtype=np.float64)
    radius = np.hypot(x - centre[0], y - centre[1]) * pixel_size
    two_theta = np.arctan2(radius, distance)
    return 2 * np.sin(two_theta / 2) / wavelength, np.cos(two_theta) ** 3


def predict_spots(
    orientation: np.ndarray,
    basis: np.ndarray,
    hkl: np.ndarray,
    *,
    wavelength: float,
    bandwidth: float,
    mosaicity: float,
    crystal_size: float,
    distance: float,
    pixel_size: float,
    centre: tuple[float, float],
    min_partiality: float = 0.01,
) -> dict[str, np.ndarray]:
    """Reflections near the Ewald sphere for one crystal orientation, with detector positions and partiality.

    Partiality is ``exp(-e² / 2σ²)`` for excitation error ``e = |s + k| - |k|`` and
    ``σ² = (η |s|)² + (Δλ/λ · λ|s|²/2)² + (1/L)²`` (mosaic spread η in radians, relative rms bandwidth
    Δλ/λ, crystal size L in Å). Spot positions are where the diffracted ray ``s + k`` meets the detector plane.

    Parameters
    ----------
    orientation : numpy.ndarray, shape (3, 3)
        Rotation U of the crystal.
    basis : numpy.ndarray, shape (3, 3)
        Reciprocal basis B.
    hkl : numpy.ndarray, shape (m, 3)
        Candidate reflections.
    wavelength : float
        Å.
    bandwidth : float
        Relative rms spectral width.
    mosaicity : float
        Mosaic spread, radians.
    crystal_size : float
        Crystal size, Å.
    distance, pixel_size : float
        Metres.
    centre : tuple of float
        Beam centre (x, y), pixels.
    min_partiality : float
        Reflections with a smaller partiality are dropped.

    Returns
    -------
    dict
        ``index`` (rows of ``hkl``), ``x``, ``y`` (pixels), ``partiality``, ``inv_d`` (1/Å).
    """
    s = hkl @ (orientation @ basis).T
    k = 1.0 / wavelength
    s_len = np.sqrt(np.einsum("ij,ij->i", s, s))
    ray = s.copy()
    ray[:, 2] += k
    ray_len = np.sqrt(np.einsum("ij,ij->i", ray, ray))
    excitation = ray_len - k
    sigma2 = (mosaicity * s_len) ** 2 + (bandwidth * wavelength * s_len**2 / 2) ** 2 + (1.0 / crystal_size) ** 2
    keep = (excitation**2 < -2 * np.log(min_partiality) * sigma2) & (ray[:, 2] > 0)
    index = np.flatnonzero(keep)
    ray = ray[index]
    scale = distance / ray[:, 2] / pixel_size
    return {
        "index": index,
        "x": centre[0] + ray[:, 0] * scale,
        "y": centre[1] + ray[:, 1] * scale,
        "partiality": np.exp(-(excitation[index] ** 2) / (2 * sigma2[index])),
        "inv_d": s_len[index],
    }


def spot_stencil(x: np.ndarray, y: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spread spots with sub-pixel centres over the 3x3 pixels around them (pixel-integrated Gaussian).

    Parameters
    ----------
    x, y : numpy.ndarray, shape (m,)
        Spot centres, pixels.
    sigma : float
        rms spot width, pixels.

    Returns
    -------
    cols, rows : numpy.ndarray, shape (m, 9), int
        Pixel coordinates of each spot's 3x3 box.
    weights : numpy.ndarray, shape (m, 9)
        Fraction of the spot in each pixel (rows sum to 1).
    """
    cx, cy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    offsets = np.arange(-1, 2)

    def profile(centre: np.ndarray, pos: np.ndarray) -> np.ndarray:
        edges = (centre[:, None] + offsets[None, :] - pos[:, None]) / sigma
        return ndtr(edges + 0.5 / sigma) - ndtr(edges - 0.5 / sigma)

    wx, wy = profile(cx, x), profile(cy, y)
    weights = (wy[:, :, None] * wx[:, None, :]).reshape(len(x), 9)
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.repeat(cy[:, None] + offsets[None, :], 3, axis=1)
    cols = np.tile(cx[:, None] + offsets[None, :], (1, 3))
    return cols, rows, weights


def background_profile(
    inv_d: np.ndarray,
    solid_angle: np.ndarray,
    *,
    low_angle: float,
    low_angle_falloff: float,
    water_ring: float,
    water_ring_d: float,
    water_ring_width: float,
) -> np.ndarray:
    """Jet (solvent + water ring) background per pixel, photons at nominal jet thickness and flux.

    Parameters
    ----------
    inv_d, solid_angle : numpy.ndarray
        From :func:`pixel_resolution`.
    low_angle, low_angle_falloff, water_ring, water_ring_d, water_ring_width : float
        See :class:`hitbench.simulate.presets.Background`.

    Returns
    -------
    numpy.ndarray
        Expected photons per pixel from the jet.
    """
    solvent = low_angle * np.exp(-inv_d / low_angle_falloff)
    ring = water_ring * np.exp(-((inv_d - 1.0 / water_ring_d) ** 2) / (2 * water_ring_width**2))
    return (solvent + ring) * solid_angle


def gamma_jitter(rng: np.random.Generator, rms: float, n: int) -> np.ndarray:
    """Mean-one positive fluctuations with relative rms ``rms`` (gamma distributed, as SASE pulse energies)."""
    if rms <= 0:
        return np.ones(n)
    shape = 1.0 / rms**2
    return rng.gamma(shape, 1.0 / shape, size=n)


def nonzero_counts(
    lam: np.ndarray, u: np.ndarray, dense_above: float = 4.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels with a non-zero Poisson count, given each pixel's uniform number (see :func:`poisson`).

    Parameters
    ----------
    lam, u : numpy.ndarray of float32, flat
        Expected photons (>= 0) and the pixels' uniform numbers.
    dense_above : float
        Expected photons above which the count is left to :func:`zero_truncated`.

    Returns
    -------
    pixels, counts : numpy.ndarray
        The pixels counted here (increasing, int64) and their counts (int32).
    dense : numpy.ndarray of int64
        The other non-zero pixels, increasing: their counts are :func:`zero_truncated` of their ``lam``.
    """
    from hitbench.simulate import _kernels  # numba, compiled on first use

    index, minus_lam = _kernels.maybe_nonzero(lam, u)
    return _kernels.settle(index, u, lam, np.exp(minus_lam), dense_above)


def zero_truncated(rng: np.random.Generator, lam: np.ndarray) -> np.ndarray:
    """Poisson counts known to be non-zero (int32), by :meth:`numpy.random.Generator.poisson` and rejection."""
    counts = np.zeros(lam.shape, dtype=np.int32)
    todo = np.arange(lam.size)
    while todo.size:
        draw = rng.poisson(lam[todo].astype(np.float64))
        counts[todo] = draw
        todo = todo[draw == 0]
    return counts


def poisson(rng: np.random.Generator, lam: np.ndarray, dense_above: float = 4.0) -> np.ndarray:
    """Poisson counts for a mostly photon-sparse field of expected photons, fast.

    Exact Poisson sampling: one uniform number per pixel decides zero or not (zero when it is at most
    ``exp(-lam)``; a compiled bracket of ``exp`` leaves numpy's ``exp`` only the pixels that may be non-zero);
    the non-zero pixels continue by inversion of the cumulative distribution, or, above ``dense_above``
    expected photons, by :meth:`numpy.random.Generator.poisson` conditioned on a non-zero count, drawn after
    all the uniform numbers (:func:`nonzero_counts`, :func:`zero_truncated`).

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    lam : numpy.ndarray
        Expected photons (any shape, >= 0).
    dense_above : float
        Expected photons above which numpy's sampler is used.

    Returns
    -------
    numpy.ndarray of int32, same shape as ``lam``
    """
    flat = np.ascontiguousarray(lam, dtype=np.float32).reshape(-1)
    u = rng.random(flat.shape, dtype=np.float32)
    pixels, counted, dense = nonzero_counts(flat, u, dense_above)
    counts = np.zeros(flat.shape, dtype=np.int32)
    counts[pixels] = counted
    counts[dense] = zero_truncated(rng, flat[dense])
    return counts.reshape(np.shape(lam))


#: Mean energy a minimum-ionising particle (a sea-level cosmic muon) loses in silicon, keV per micrometre: the
#: PDG's minimum mass stopping power of silicon, 1.664 MeV cm²/g, times its density, 2.329 g/cm³.
MIP_SILICON_KEV_PER_UM = 1.664e3 * 2.329 * 1e-4


def cosmic_ray_deposit(
    rng: np.random.Generator, n_tracks: int, shape: tuple[int, int], thickness_um: float, pixel_um: float
) -> tuple[np.ndarray, np.ndarray]:
    """Energy that ``n_tracks`` cosmic muons deposit in the pixels of a silicon sensor.

    Each muon enters the sensor at a uniform point of the frame, at an angle ``a`` to the sensor's normal with
    ``cos a = sqrt(u)``, ``u`` uniform (an isotropic flux through a plane), and a uniform azimuth. It crosses the
    thickness over an in-plane length ``thickness tan a`` (at most the frame's diagonal: a grazing muon leaves
    through the frame's side), losing :data:`MIP_SILICON_KEV_PER_UM` along its path, shared among the pixels
    under the track in proportion to the length over each (sampled at a quarter pixel). A muon along the normal
    lights one pixel; a slanted one a straight track of many.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random numbers.
    n_tracks : int
        Muons crossing the sensor.
    shape : tuple of int
        Frame (rows, columns).
    thickness_um, pixel_um : float
        Sensor thickness and pixel size, micrometres.

    Returns
    -------
    pixels : numpy.ndarray of int64
        Flat indices of the pixels hit, increasing.
    energy_kev : numpy.ndarray of float64
        Energy deposited in each, keV.
    """
    h, w = shape
    start = rng.uniform((0.0, 0.0), (h, w), size=(n_tracks, 2))
    cos_a = np.sqrt(rng.uniform(0.0, 1.0, n_tracks))
    azimuth = rng.uniform(0.0, 2.0 * np.pi, n_tracks)
    tan_a = np.sqrt(np.maximum(1.0 - cos_a**2, 0.0)) / np.maximum(cos_a, 1e-12)
    length = np.minimum(thickness_um * tan_a / pixel_um, np.hypot(h, w))  # in-plane, pixels
    path_um = np.hypot(thickness_um, length * pixel_um)
    cells, deposits = [np.empty(0, np.int64)], [np.empty(0)]
    for (y0, x0), size, angle, path in zip(start, length, azimuth, path_um, strict=True):
        n_steps = max(1, int(np.ceil(4.0 * size)))
        t = (np.arange(n_steps) + 0.5) / n_steps * size
        rows = np.floor(y0 + t * np.sin(angle)).astype(np.int64)
        cols = np.floor(x0 + t * np.cos(angle)).astype(np.int64)
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        track, steps = np.unique(rows[inside] * w + cols[inside], return_counts=True)
        cells.append(track)
        deposits.append(steps * (MIP_SILICON_KEV_PER_UM * path / n_steps))
    pixels, where = np.unique(np.concatenate(cells), return_inverse=True)
    return pixels, np.bincount(where, np.concatenate(deposits), minlength=pixels.size)
