"""pPXF full-spectral fitting with the generator's own physics: the baseline the network is compared with.

* :mod:`~sfh_ml.fitting.templates`: SSP templates at the MUSE resolution, log-rebinned, with the
  nebular continuum on the young ones and their HST fluxes;
* :mod:`~sfh_ml.fitting.lines`: the emission-line mask;
* :mod:`~sfh_ml.fitting.fit`: one pPXF fit (CF00 dust, regularisation, optional HST fluxes);
* :mod:`~sfh_ml.fitting.weights`: pPXF's mass weights to histories per SSP age and per target bin;
* :mod:`~sfh_ml.fitting.batch`: every object of a synthetic set, in parallel processes.
"""

from .batch import SCALAR_KEYS, fit_arrays, fit_file, to_predictions
from .fit import DEFAULT_REGUL, cf00_screen, fit_spectrum
from .lines import emission_line_mask, masked_lines_aa
from .templates import DEFAULT_LOG_U, PPXFTemplates, build_templates, log_rebin_spectra
from .weights import binned_histories, ssp_histories, ssp_means

__all__ = [
    "SCALAR_KEYS",
    "fit_arrays",
    "fit_file",
    "to_predictions",
    "DEFAULT_REGUL",
    "cf00_screen",
    "fit_spectrum",
    "emission_line_mask",
    "masked_lines_aa",
    "DEFAULT_LOG_U",
    "PPXFTemplates",
    "build_templates",
    "log_rebin_spectra",
    "binned_histories",
    "ssp_histories",
    "ssp_means",
]
