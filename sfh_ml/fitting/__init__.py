"""pPXF full-spectral fitting with the generator's own physics: the baseline the network is compared with.

* :mod:`~sfh_ml.fitting.templates`: SSP templates at the MUSE resolution, log-rebinned, with the
  nebular continuum on the young ones and their HST fluxes;
* :mod:`~sfh_ml.fitting.lines`: the emission-line mask;
* :mod:`~sfh_ml.fitting.fit`: one pPXF fit (CF00 dust, regularisation, optional HST fluxes);
* :mod:`~sfh_ml.fitting.weights`: pPXF's mass weights to histories per SSP age and per target bin;
* :mod:`~sfh_ml.fitting.batch`: every object of a synthetic set, in parallel on Dask;
* :mod:`~sfh_ml.fitting.regul`: choosing the regularisation (Delta chi^2 = sqrt(2 N));
* :mod:`~sfh_ml.fitting.compare`: pPXF against the networks on the same held-out sets (scores,
  tables, speeds);
* :mod:`~sfh_ml.fitting.kinematics`: stellar velocity and dispersion of real spectra (pPXF), for
  their preparation (:func:`sfh_ml.predict_spectra`).

The network and pPXF on the same real spectra (:mod:`sfh_ml.observations.real_spectra`) live with
the readers of those spectra, in the observations wing, which builds on this one.
"""

from .batch import SCALAR_KEYS, fit_arrays, fit_file, to_predictions
from .compare import (
    PHANGS_CUBE_BINS,
    PHANGS_CUBE_SPAXELS,
    compare_methods,
    cube_hours,
    held_out_set,
    load_networks,
    markdown,
    network_speed,
    per_bin_errors,
    ppxf_fits,
    read_csv_rows,
    sample_stats,
    score_series,
    score_set,
    speed_summary,
    speed_table,
    write_tables,
)
from .fit import DEFAULT_REGUL, TAU_V_BOUNDS, cf00_screen, fit_spectrum
from .kinematics import KINEMATICS_DEGREE, KINEMATICS_KEYS, fit_kinematics, kinematics_templates
from .lines import emission_line_mask, masked_lines_aa
from .regul import REGUL_GRID, regul_by_delta_chi2
from .templates import DEFAULT_LOG_U, PPXFTemplates, build_templates, log_rebin_spectra
from .weights import binned_histories, ssp_histories, ssp_means

__all__ = [
    "SCALAR_KEYS",
    "fit_arrays",
    "fit_file",
    "to_predictions",
    "DEFAULT_REGUL",
    "TAU_V_BOUNDS",
    "cf00_screen",
    "fit_spectrum",
    "KINEMATICS_DEGREE",
    "KINEMATICS_KEYS",
    "fit_kinematics",
    "kinematics_templates",
    "emission_line_mask",
    "masked_lines_aa",
    "DEFAULT_LOG_U",
    "PPXFTemplates",
    "build_templates",
    "log_rebin_spectra",
    "binned_histories",
    "ssp_histories",
    "ssp_means",
    "REGUL_GRID",
    "regul_by_delta_chi2",
    "PHANGS_CUBE_BINS",
    "PHANGS_CUBE_SPAXELS",
    "compare_methods",
    "cube_hours",
    "held_out_set",
    "load_networks",
    "markdown",
    "network_speed",
    "per_bin_errors",
    "ppxf_fits",
    "read_csv_rows",
    "sample_stats",
    "score_series",
    "score_set",
    "speed_summary",
    "speed_table",
    "write_tables",
]
