"""Choosing pPXF's regularisation by the Delta chi^2 = sqrt(2 N_good) criterion (Press et al. 1992,
sect. 18.5; the pPXF examples of Cappellari 2017).

For each object: fit without regularisation, rescale the noise so that this fit has chi^2 / N = 1,
then refit at each ``regul`` of a grid; the chosen value is the largest whose chi^2 exceeds the
unregularised one by at most sqrt(2 N_good) (N_good: the fitted pixels). How
:data:`sfh_ml.fitting.DEFAULT_REGUL` was chosen; ``benchmarks/ppxf_fit.py --choose-regul`` and
chapter 5 repeat it.
"""

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from ..synthesis import load_library, read_dataset
from .fit import fit_spectrum
from .lines import emission_line_mask
from .templates import build_templates

__all__ = ["REGUL_GRID", "regul_by_delta_chi2"]

REGUL_GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)


def regul_by_delta_chi2(path, index, grid=REGUL_GRID, library=None, progress=False):
    """The Delta chi^2 curve of each object of a synthetic set and the ``regul`` it chooses.

    Parameters
    ----------
    path : str or Path
        A synthetic set (:func:`sfh_ml.synthesis.generate`).
    index : slice or ndarray of int
        Objects to use.
    grid : sequence of float
        ``regul`` values tried, increasing.
    library : SSPLibrary, optional
        Default :func:`sfh_ml.synthesis.load_library`.
    progress : bool
        A tqdm bar over the fits (one unregularised and ``len(grid)`` per object, one thread).

    Returns
    -------
    dict
        ``grid`` (n_grid,); ``delta_chi2`` (n_obj, n_grid): chi^2 of each fit minus that of the
        unregularised one, after the rescaling (chi^2 summed over the good pixels, not per pixel);
        ``threshold``: sqrt(2 N_good); ``chosen`` (n_obj,): the largest ``regul`` within the
        threshold (0 where even the smallest exceeds it); ``chi2_unregularised`` (n_obj,): per good
        pixel, before the rescaling.
    """
    lib = load_library() if library is None else library
    d = read_dataset(path, ["spectra", "noise", "wave_aa"], index)
    templates = build_templates(d["wave_aa"], lib)
    mask = emission_line_mask(lib, templates.lam)
    n_good = int(mask.sum())
    grid = np.asarray(grid, dtype=float)
    delta = np.full((len(d["spectra"]), grid.size), np.nan)
    chi2_0 = np.full(len(d["spectra"]), np.nan)
    n_fits = delta.size + chi2_0.size
    bar = tqdm(total=n_fits, desc="pPXF fits (regul grid)", unit="fit", disable=not progress)
    with threadpool_limits(1), bar:
        for i, (spectrum, noise) in enumerate(zip(d["spectra"], d["noise"])):
            chi2_0[i] = fit_spectrum(templates, spectrum, noise, mask, regul=0.0)["chi2"]
            bar.update()
            rescaled = noise * np.sqrt(chi2_0[i])  # chi^2 / N = 1 without regularisation
            for j, regul in enumerate(grid):
                chi2 = fit_spectrum(templates, spectrum, rescaled, mask, regul=regul)["chi2"]
                delta[i, j] = (chi2 - 1.0) * n_good
                bar.update()
    threshold = float(np.sqrt(2.0 * n_good))
    within = delta <= threshold
    # the largest value before the first that exceeds the threshold
    first_bad = np.where(within.all(axis=1), grid.size, np.argmin(within, axis=1))
    chosen = np.where(first_bad > 0, grid[np.maximum(first_bad - 1, 0)], 0.0)
    return {
        "grid": grid,
        "delta_chi2": delta,
        "threshold": threshold,
        "chosen": chosen,
        "chi2_unregularised": chi2_0,
    }
