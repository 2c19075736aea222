"""Quality flags of prepared observations: one bit mask per object (spaxel, bin or cluster).

Every step of the path from a real file to the network's input that can find an object unusable
sets one of these bits instead of dropping or silently using it; the outputs (maps, tables) carry the
mask. 0 means nothing was found wrong. Add a bit here (the next free power of two) and to
:data:`FLAG_BITS`; never reuse a value.

The outputs' ``QUALITY`` (maps) and ``quality`` (tables) hold these bits in bits 0-7 and the
network's own quality bits (:data:`sfh_ml.network.QUALITY_FLAGS`) shifted by
:data:`NETWORK_FLAG_SHIFT` (bits 8 and up); :func:`quality_bits` names them all and
:func:`decode_quality` turns values into names.
"""

import numpy as np

__all__ = [
    "NO_DATA",
    "LOW_COVERAGE",
    "TOO_BROAD",
    "NO_KINEMATICS",
    "NEGATIVE_FLUX",
    "LOW_SNR",
    "OUTSIDE_CUBE",
    "FLAG_BITS",
    "NETWORK_FLAG_SHIFT",
    "flag_names",
    "quality_bits",
    "decode_quality",
]

NO_DATA = 1 << 0  # no valid pixel on the model grid (all NaN, DQ-flagged or zero variance)
LOW_COVERAGE = 1 << 1  # valid rest-frame pixels cover less than the required fraction of the model grid
TOO_BROAD = 1 << 2  # stellar dispersion above the model's: cannot be matched by broadening, left as is
NO_KINEMATICS = 1 << 3  # velocity or dispersion unknown (NaN): rest frame or resolution not matched
NEGATIVE_FLUX = 1 << 4  # median flux of the valid pixels <= 0 (continuum not detected, or over-subtracted)
LOW_SNR = 1 << 5  # continuum S/N below the application's threshold: predicted, but trust it less
OUTSIDE_CUBE = 1 << 6  # a catalogue position outside the cube (or its aperture): no spectrum, no prediction

NETWORK_FLAG_SHIFT = 8  # the network's quality bits are stored from this bit on

FLAG_BITS = {
    "NO_DATA": NO_DATA,
    "LOW_COVERAGE": LOW_COVERAGE,
    "TOO_BROAD": TOO_BROAD,
    "NO_KINEMATICS": NO_KINEMATICS,
    "NEGATIVE_FLUX": NEGATIVE_FLUX,
    "LOW_SNR": LOW_SNR,
    "OUTSIDE_CUBE": OUTSIDE_CUBE,
}


def flag_names(value):
    """Names of the bits set in one flag value.

    Parameters
    ----------
    value : int
        A bit mask built from the constants of this module.

    Returns
    -------
    list of str
        In the order of :data:`FLAG_BITS`; empty for 0.
    """
    value = int(value)
    return [name for name, bit in FLAG_BITS.items() if value & bit]


def quality_bits():
    """Name of each bit of the outputs' quality flag: {name: bit value}.

    The preparation's bits (:data:`FLAG_BITS`) and the network's, named ``NETWORK_<NAME>`` and
    shifted by :data:`NETWORK_FLAG_SHIFT`.
    """
    from ..network.quality import QUALITY_FLAGS  # no Keras

    bits = dict(FLAG_BITS)
    bits.update({f"NETWORK_{k.upper()}": v << NETWORK_FLAG_SHIFT for k, v in QUALITY_FLAGS.items()})
    return bits


def decode_quality(quality):
    """Names of the bits set in the outputs' quality flags.

    Parameters
    ----------
    quality : int or array-like of int, shape (...)
        A ``quality`` value or column of the tables of ``apply`` and ``predict``, or the ``QUALITY``
        map.

    Returns
    -------
    list of str, or ndarray of object, shape (...)
        For one value, the names of its bits (in the order of :func:`quality_bits`; empty for 0);
        for an array, that list for each element.

    Raises
    ------
    ValueError
        Negative values, or bits that no flag defines (a file from another version?).

    Examples
    --------
    >>> decode_quality(LOW_SNR | NO_KINEMATICS)
    ['NO_KINEMATICS', 'LOW_SNR']
    """
    bits = quality_bits()
    q = np.asarray(quality)
    if q.dtype.kind == "f":
        if not np.all(np.isfinite(q)) or np.any(q != np.round(q)):
            raise ValueError("quality flags must be whole numbers (NaN or fractions found)")
    q = q.astype(np.int64)
    known = 0
    for bit in bits.values():
        known |= bit
    if np.any(q < 0) or np.any(q & ~known):
        raise ValueError(
            f"quality values {sorted(set(q[(q < 0) | ((q & ~known) != 0)].ravel().tolist()))[:5]} set bits "
            f"that no flag defines (known: {', '.join(bits)}): a file from another version of sfh_ml?"
        )
    if q.ndim == 0:
        return [name for name, bit in bits.items() if int(q) & bit]
    out = np.empty(q.shape, dtype=object)
    for index, value in np.ndenumerate(q):
        out[index] = [name for name, bit in bits.items() if int(value) & bit]
    return out
