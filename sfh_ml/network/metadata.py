"""What a network was trained for: wavelength grid, bands, age bins and [M/H] range; its light table,
the calibration of its uncertainties and the thresholds of its out-of-distribution flag.

The metadata live inside the model (in the configs of its first and last layers), so a saved
``.keras`` file carries them; :func:`check_compatible` refuses data on another grid.
"""

import numpy as np

from ..utils import as_str

__all__ = ["get_metadata", "check_compatible", "WAVE_ATOL_AA", "AGE_BINS_RTOL"]

WAVE_ATOL_AA = 1e-3  # wavelength grids equal within this (Angstrom)
AGE_BINS_RTOL = 1e-6  # age-bin edges equal within this relative tolerance


def get_metadata(model):
    """What a model was built for.

    Returns
    -------
    dict
        ``version``, ``n_wave``, ``n_bands``, ``n_bins``, ``zh_range`` (tuple), ``wave_aa``,
        ``age_bins_yr`` (ndarray or None), ``filters`` (list of str or None); ``bin_light``
        (ndarray (n_bins, n_zh) or None) and ``zh_grid`` (ndarray (n_zh,) or None), the light table
        of the training set (None for models trained on sets without one: no light-weighted
        means); ``sigma_scale_sfh_cum`` and ``sigma_scale_zh`` (ndarray (n_bins,) or None = not
        calibrated), the factors :func:`sfh_ml.network.predict` applies to the predicted sigmas;
        ``tail_scale_sfh_cum`` and ``tail_scale_zh`` (ndarray (n_bins,) or None = Gaussian), those of
        the 2-sigma half-widths;
        ``ood_thresholds`` (ndarray (k, 2) of ``[snr_model, threshold]`` rows, or None = not
        calibrated: :data:`sfh_ml.network.goodness.OOD_THRESHOLDS` apply), the thresholds of the
        out-of-distribution flag (:func:`sfh_ml.network.calibrate_ood`); ``trust_params`` (dict or
        None = the module's :data:`sfh_ml.network.trust.TRUST_PARAMS`), the trust score's
        (:func:`sfh_ml.network.calibrate_trust`).
    """
    try:
        norm, head = model.get_layer("normalisation"), model.get_layer("history")
    except ValueError as err:
        raise ValueError(f"{model.name} is not an sfh_ml model (no normalisation/history layer)") from err
    as_array = lambda v: None if v is None else np.asarray(v, dtype=np.float64)
    return {
        "version": head.version,
        "n_wave": norm.n_wave,
        "n_bands": norm.n_bands,
        "n_bins": head.n_bins,
        "zh_range": head.zh_range,
        "wave_aa": as_array(norm.wave_aa),
        "age_bins_yr": as_array(head.age_bins_yr),
        "filters": norm.filters,
        "bin_light": as_array(head.bin_light),
        "zh_grid": as_array(head.zh_grid),
        "sigma_scale_sfh_cum": as_array(head.sigma_scale_sfh_cum),
        "sigma_scale_zh": as_array(head.sigma_scale_zh),
        "tail_scale_sfh_cum": as_array(getattr(head, "tail_scale_sfh_cum", None)),
        "tail_scale_zh": as_array(getattr(head, "tail_scale_zh", None)),
        "ood_thresholds": as_array(getattr(head, "ood_thresholds", None)),
        "trust_params": getattr(head, "trust_params", None),
    }


def check_compatible(model, wave_aa, age_bins_yr, filters=None):
    """Raise ValueError if a data set's grids differ from those the model was trained on.

    Parameters
    ----------
    model : keras.Model
        A model from :func:`build_model` (or loaded from disk).
    wave_aa : array, shape (n_wave,) or None
        The data's wavelength grid in Angstrom (compared within 1e-3 Angstrom); None skips the check.
    age_bins_yr : array, shape (n_bins + 1,) or None
        The data's age-bin edges in years (compared with rtol 1e-6); None skips the check.
    filters : sequence of str, optional
        The data's band names, in order; None skips the check.
    """
    meta = get_metadata(model)
    if wave_aa is not None:
        _check_wave(meta, np.asarray(wave_aa, dtype=np.float64))
    if age_bins_yr is not None:
        age_bins_yr = np.asarray(age_bins_yr, dtype=np.float64)
        if age_bins_yr.size != meta["n_bins"] + 1:
            raise ValueError(
                f"age bins mismatch: model has {meta['n_bins']} bins, the data {age_bins_yr.size - 1}"
            )
        if meta["age_bins_yr"] is not None and not np.allclose(
            age_bins_yr, meta["age_bins_yr"], rtol=AGE_BINS_RTOL, atol=0
        ):
            raise ValueError(
                f"age bins mismatch: model edges {meta['age_bins_yr']} yr, data edges {age_bins_yr} yr"
            )
    if filters is not None and meta["filters"] is not None:
        filters = as_str(filters)
        if filters != meta["filters"]:
            raise ValueError(f"filters mismatch: model expects {meta['filters']}, got {filters}")


def _check_wave(meta, wave_aa):
    """The wavelength part of :func:`check_compatible`: size, then each pixel within WAVE_ATOL_AA."""
    if wave_aa.size != meta["n_wave"]:
        raise ValueError(
            f"wavelength grid mismatch: the model expects {meta['n_wave']} pixels, got {wave_aa.size}"
        )
    if meta["wave_aa"] is not None and not np.allclose(wave_aa, meta["wave_aa"], rtol=0, atol=WAVE_ATOL_AA):
        worst = int(np.argmax(np.abs(wave_aa - meta["wave_aa"])))
        raise ValueError(
            f"wavelength grid mismatch: pixel {worst} is {wave_aa[worst]:.4f} A, the model expects "
            f"{meta['wave_aa'][worst]:.4f} A "
            f"(model grid {meta['wave_aa'][0]:.3f}..{meta['wave_aa'][-1]:.3f} A)"
        )
