"""Quality flags of prepared observations: one bit mask per object (spaxel, bin or cluster).

Every step of the path from a real file to the network's input that can find an object unusable
sets one of these bits instead of dropping or silently using it; the outputs (maps, tables) carry the
mask. 0 means nothing was found wrong. Add a bit here (the next free power of two) and to
:data:`FLAG_BITS`; never reuse a value.
"""

__all__ = [
    "NO_DATA",
    "LOW_COVERAGE",
    "TOO_BROAD",
    "NO_KINEMATICS",
    "NEGATIVE_FLUX",
    "LOW_SNR",
    "OUTSIDE_CUBE",
    "FLAG_BITS",
    "flag_names",
]

NO_DATA = 1 << 0  # no valid pixel on the model grid (all NaN, DQ-flagged or zero variance)
LOW_COVERAGE = 1 << 1  # valid rest-frame pixels cover less than the required fraction of the model grid
TOO_BROAD = 1 << 2  # stellar dispersion above the model's: cannot be matched by broadening, left as is
NO_KINEMATICS = 1 << 3  # velocity or dispersion unknown (NaN): rest frame or resolution not matched
NEGATIVE_FLUX = 1 << 4  # median flux of the valid pixels <= 0 (continuum not detected, or over-subtracted)
LOW_SNR = 1 << 5  # continuum S/N below the application's threshold: predicted, but trust it less
OUTSIDE_CUBE = 1 << 6  # a catalogue position outside the cube (or its aperture): no spectrum, no prediction

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
