"""The emission-line mask of the pPXF fits: the generator's own, from :mod:`sfh_ml.synthesis.lines`.

At MUSE sampling the simplest robust treatment of the nebular lines is to leave them out of the
fit: every Cloudy line the synthesizer draws is masked (:func:`emission_line_mask`). Fitting the lines
with gas templates instead would need the generator's line ratios at an unknown log U and [M/H];
masking costs ~13 % of the MUSE pixels, mostly H-alpha, [N II], [S II] and the Paschen and [S III]
lines in the red.
"""

from ..synthesis.lines import (
    LINE_MIN_HBETA_RATIO,
    MASK_N_SIGMA,
    MASK_SIGMA_GAS_KMS,
    emission_line_mask,
    masked_lines_aa,
)

__all__ = [
    "MASK_N_SIGMA",
    "MASK_SIGMA_GAS_KMS",
    "LINE_MIN_HBETA_RATIO",
    "masked_lines_aa",
    "emission_line_mask",
]
