"""The network's per-object quality flags: one bit mask per object, 0 = good.

Kept apart from :mod:`~sfh_ml.network.inference` (which sets them) so that code reading the flags of
an output file (:func:`sfh_ml.observations.decode_quality`) does not start Keras.
"""

__all__ = [
    "QUALITY_NO_SPECTRUM",
    "QUALITY_FEW_PIXELS",
    "QUALITY_NEGATIVE_SPECTRUM",
    "QUALITY_PHOTOMETRY_SCALE",
    "QUALITY_MISSING_BANDS",
    "QUALITY_OUT_OF_DISTRIBUTION",
    "QUALITY_NO_NOISE",
    "QUALITY_UNTRUSTED",
    "QUALITY_WRONG_REDSHIFT",
    "QUALITY_FLAGS",
    "QUALITY_UNUSABLE",
]

# Per-object quality flags: a bit mask, 0 = good.
QUALITY_NO_SPECTRUM = 1  # no usable pixel: all NaN, inf, zero or missing-value flags
QUALITY_FEW_PIXELS = 2  # fewer than MIN_VALID_FRACTION of the pixels usable (training masks at most ~25 %)
QUALITY_NEGATIVE_SPECTRUM = 4  # more than half the usable pixels < 0 (median < 0): not a flux density
QUALITY_PHOTOMETRY_SCALE = 8  # a band differs from the spectrum's level by > PHOT_SCALE_TOLERANCE: units?
QUALITY_MISSING_BANDS = 16  # at least one band missing (NaN, <= 0, a flag): predicted without it
# The re-synthesised prediction misses the data by more than the own world allows (ood_score > 1,
# sfh_ml.network.goodness): set only when the goodness of fit is asked for; informative.
QUALITY_OUT_OF_DISTRIBUTION = 32
# The goodness of fit was asked for but the object could not be scored: no pixel with a finite flux
# and a finite noise > 0 (chi2_pixel and ood_score NaN). Informative: the prediction stands.
QUALITY_NO_NOISE = 64
# The trust score (sfh_ml.network.trust) is below its threshold: the mass-weighted age is likely off
# by more than 0.3 dex. Set only when the trust score is asked for; informative.
QUALITY_UNTRUSTED = 128
# The spectrum's features match its re-synthesised prediction best at a velocity lag of more than
# 300 km/s (sfh_ml.network.trust.wrong_redshift): the redshift it was brought to the rest frame with
# is likely wrong. Set only with the trust score and the goodness of fit; informative.
QUALITY_WRONG_REDSHIFT = 256
QUALITY_FLAGS = {
    "no_spectrum": QUALITY_NO_SPECTRUM,
    "few_pixels": QUALITY_FEW_PIXELS,
    "negative_spectrum": QUALITY_NEGATIVE_SPECTRUM,
    "photometry_scale": QUALITY_PHOTOMETRY_SCALE,
    "missing_bands": QUALITY_MISSING_BANDS,
    "out_of_distribution": QUALITY_OUT_OF_DISTRIBUTION,
    "no_noise": QUALITY_NO_NOISE,
    "untrusted": QUALITY_UNTRUSTED,
    "wrong_redshift": QUALITY_WRONG_REDSHIFT,
}
# Objects with any of these bits get NaN predictions; QUALITY_MISSING_BANDS,
# QUALITY_OUT_OF_DISTRIBUTION, QUALITY_NO_NOISE, QUALITY_UNTRUSTED and QUALITY_WRONG_REDSHIFT only inform.
QUALITY_UNUSABLE = (
    QUALITY_NO_SPECTRUM | QUALITY_FEW_PIXELS | QUALITY_NEGATIVE_SPECTRUM | QUALITY_PHOTOMETRY_SCALE
)
