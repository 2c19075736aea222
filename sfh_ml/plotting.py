"""Every figure of the book: SFH families, the SSP library, synthesis steps, data sets, training and
validation of the networks, and their application to a galaxy (maps on the sky, gradients, clusters).

Each function draws on the Axes it is given (or on new ones) and returns them; matplotlib is imported
inside the functions.
"""

import numpy as np

from .network.metrics import bin_centres_yr, group_statistic, scatter_stats, snr_bin_centres

__all__ = [
    "plot_sfh_family",
    "plot_binned_histories",
    "plot_ssp_library",
    "plot_surviving_mass",
    "plot_seam",
    "plot_spectrum_components",
    "plot_broadening",
    "plot_photometry",
    "plot_noise",
    "plot_dataset_overview",
    "plot_spectra_by_age",
    "plot_recovery",
    "plot_one_to_one",
    "plot_per_bin_error",
    "plot_scatter_by_group",
    "plot_learning_curve",
    "plot_history",
    "plot_validation_curves",
    "plot_coverage",
    "plot_architecture",
    "plot_sky_map",
    "plot_sky_maps",
    "plot_bin_map",
    "plot_cube_spectrum",
    "plot_radial_gradient",
    "plot_cluster_ages",
    "plot_region_histories",
    "plot_young_sequence",
    "plot_regul_choice",
    "plot_method_histories",
    "plot_accuracy_vs_snr",
    "plot_per_bin_by_method",
    "plot_young_old",
    "plot_speed",
    "plot_valley",
    "plot_real_spectra_check",
]


def _axes(ax, **kw):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(**kw)
    return ax


def plot_sfh_family(batch, ax_sfr=None, ax_cum=None, ax_zh=None, n_show=8, title=None):
    """Star formation rate, cumulative mass and metallicity track of the first ``n_show`` histories.

    Parameters
    ----------
    batch : SFHBatch
    ax_sfr, ax_cum, ax_zh : matplotlib Axes, optional
        Where to draw each panel; created in one row if all are omitted.
    n_show : int
    title : str, optional

    Returns
    -------
    tuple of Axes
    """
    import matplotlib.pyplot as plt

    if ax_sfr is None and ax_cum is None and ax_zh is None:
        _, (ax_sfr, ax_cum, ax_zh) = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    age = np.logspace(6, np.log10(batch.age_grid_yr[-1]) - 1e-6, 600)
    sfr = batch.sfr(age)
    cum = 1.0 - batch.cumulative_at(age)  # fraction formed by then
    zh = batch.zh_at(cum)
    colors = plt.cm.viridis(np.linspace(0, 0.9, n_show))
    for i in range(min(n_show, len(batch))):
        if ax_sfr is not None:
            ax_sfr.plot(age, sfr[i] / sfr[i].max(), color=colors[i], lw=1.2)
        if ax_cum is not None:
            ax_cum.plot(age, cum[i], color=colors[i], lw=1.2)
        if ax_zh is not None:
            ax_zh.plot(age, zh[i], color=colors[i], lw=1.2)
    for ax, label in (
        (ax_sfr, "SFR / max"),
        (ax_cum, "mass fraction formed"),
        (ax_zh, "[M/H] of stars born"),
    ):
        if ax is not None:
            ax.set_xscale("log")
            ax.set_xlabel("look-back time [yr]")
            ax.set_ylabel(label)
            ax.invert_xaxis()
    if title and ax_sfr is not None:
        ax_sfr.set_title(title)
    return ax_sfr, ax_cum, ax_zh


def plot_binned_histories(batch, age_bins_yr, n_show=3, axs=None):
    """The mass fraction and [M/H] of the first ``n_show`` histories in the target age bins.

    Parameters
    ----------
    batch : SFHBatch
    age_bins_yr : ndarray, shape (n_bins + 1,)
        Bin edges in years.
    n_show : int
    axs : pair of Axes, optional
        Where to draw the mass fractions and the [M/H]; created side by side if omitted.

    Returns
    -------
    pair of Axes
    """
    import matplotlib.pyplot as plt

    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(12, 3.5), constrained_layout=True)
    ax_sfh, ax_zh = axs
    centres = bin_centres_yr(age_bins_yr)
    sfh, zh = batch.mass_fractions(age_bins_yr), batch.zh_in_bins(age_bins_yr)
    for i in range(min(n_show, len(batch))):
        ax_sfh.step(centres, sfh[i], where="mid", color=f"C{i}")
        ax_zh.step(centres, zh[i], where="mid", color=f"C{i}")
    ax_sfh.set(xscale="log", xlabel="age bin [yr]", ylabel="sfh: mass fraction")
    ax_zh.set(xscale="log", xlabel="age bin [yr]", ylabel="zh: [M/H] of the stars formed")
    return axs


def plot_ssp_library(library, zh_index=4, ax=None, wave_range=(1700, 10000), norm_aa=5500.0):
    """SSP spectra of one metallicity, coloured by age, normalised at ``norm_aa``."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    ax = _axes(ax, figsize=(10, 4.5))
    w = library.wave_aa
    m = (w > wave_range[0]) & (w < wave_range[1])
    i0 = np.argmin(np.abs(w - norm_aa))
    cmap = plt.cm.plasma
    norm = LogNorm(library.age_yr[0], library.age_yr[-1])
    for k, age in enumerate(library.age_yr):
        f = library.flux[k, zh_index]
        ax.plot(w[m], f[m] / f[i0], color=cmap(norm(age)), lw=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("wavelength [Å]")
    ax.set_ylabel(f"flux / flux({norm_aa:.0f} Å)")
    ax.set_title(f"SSP library, [M/H] = {library.zh[zh_index]:+.2f}: BC03 below 63 Myr, E-MILES above")
    plt.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="age [yr]")
    return ax


def plot_surviving_mass(library, ax=None, seam_age_yr=10**7.8):
    """Stellar mass that survives (living stars and remnants) per unit mass formed, against age.

    Parameters
    ----------
    library : SSPLibrary
        Its ``mstar_frac``, shape (n_age, n_zh), one curve per [M/H].
    ax : Axes, optional
    seam_age_yr : float
        Age of the seam between BC03 and E-MILES (63 Myr), marked with a dotted line.

    Returns
    -------
    Axes
    """
    ax = _axes(ax, figsize=(6, 3.5))
    for j, zh in enumerate(library.zh):
        ax.plot(library.age_yr, library.mstar_frac[:, j], label=f"[M/H] = {zh:+.2f}")
    ax.axvline(seam_age_yr, color="0.7", ls=":")
    ax.set(xscale="log", xlabel="age [yr]", ylabel="surviving mass / mass formed")
    ax.legend(fontsize=7)
    return ax


def plot_seam(library, zh_index=4, ax=None, wave_range=(3800, 9300), n_each=3):
    """Spectra just below (BC03) and above (E-MILES) the 63 Myr seam, in L_sun/Å/M_sun."""
    ax = _axes(ax, figsize=(10, 4))
    w = library.wave_aa
    m = (w > wave_range[0]) & (w < wave_range[1])
    k = int(np.argmin(np.abs(library.age_yr - 10**7.8)))
    for j in range(k - n_each, k + n_each):
        style = "--" if j < k else "-"
        src = "BC03 (scaled)" if j < k else "E-MILES"
        ax.plot(
            w[m],
            library.flux[j, zh_index, m],
            style,
            lw=0.7,
            label=f"{library.age_yr[j] / 1e6:.0f} Myr, {src}",
        )
    ax.set_xlabel("wavelength [Å]")
    ax.set_ylabel("L$_\\odot$ Å$^{-1}$ M$_\\odot^{-1}$")
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("Across the 63 Myr seam")
    return ax


def plot_spectrum_components(wave_aa, out, index=0, ax=None, wave_range=None):
    """Noise-free spectrum of one object with its stellar, nebular-continuum and line parts.

    ``out`` is the dict returned by ``Synthesizer(..., components=True)``.
    """
    ax = _axes(ax, figsize=(11, 4))
    m = slice(None) if wave_range is None else (wave_aa > wave_range[0]) & (wave_aa < wave_range[1])
    ax.plot(wave_aa[m], out["dust_free"][index][m], color="0.6", lw=0.8, label="without dust")
    ax.plot(wave_aa[m], out["spectra_noiseless"][index][m], color="k", lw=0.8, label="total")
    ax.plot(wave_aa[m], out["stellar"][index][m], color="C0", lw=0.8, label="stars")
    ax.plot(wave_aa[m], out["nebular_continuum"][index][m], color="C1", lw=0.8, label="nebular continuum")
    ax.plot(wave_aa[m], out["emission_lines"][index][m], color="C3", lw=0.6, label="emission lines")
    ax.set_yscale("log")
    total = out["spectra_noiseless"][index][m]
    ax.set_ylim(np.median(total) * 3e-3, total.max() * 2)
    ax.set_xlabel("wavelength [Å]")
    ax.set_ylabel("L$_\\odot$ Å$^{-1}$ per M$_\\odot$ formed")
    ax.legend(fontsize=8, ncol=5, loc="upper right")
    return ax


def plot_broadening(library_wave, library_flux, muse_wave, muse_flux, ax=None, wave_range=(5100, 5300)):
    """A stretch of spectrum at the library resolution and after the MUSE LSF + velocity dispersion."""
    ax = _axes(ax, figsize=(10, 3.5))
    m1 = (library_wave > wave_range[0]) & (library_wave < wave_range[1])
    m2 = (muse_wave > wave_range[0]) & (muse_wave < wave_range[1])
    ax.plot(
        library_wave[m1], library_flux[m1], color="0.5", lw=0.8, label="SSP mix, library resolution (2.5 Å)"
    )
    ax.plot(muse_wave[m2], muse_flux[m2], color="C3", lw=1.2, label="MUSE LSF ⊕ σ★, on the MUSE grid")
    ax.set_xlabel("wavelength [Å]")
    ax.legend(fontsize=8)
    return ax


def plot_photometry(wave_aa, flux, pivots_aa, phot, filters, ax=None, muse_range=(4750, 9350)):
    """Full-range spectrum, the filter curves and the five band fluxes at their pivot wavelengths."""
    from .synthesis.photometry import load_filters

    ax = _axes(ax, figsize=(11, 4))
    ax.plot(wave_aa, flux, color="k", lw=0.5, label="spectrum")
    top = 2.0 * max(np.nanpercentile(flux, 98), np.nanmax(phot))  # strong lines run off the top
    for (fw, ft), name, c in zip(load_filters(filters), filters, ["C4", "C0", "C2", "C1", "C3"]):
        ax.fill_between(fw, 0, ft / ft.max() * top * 0.3, color=c, alpha=0.2)
        ax.text(fw[np.argmax(ft)], top * 0.32, name.split("_")[-1], color=c, ha="center", fontsize=8)
    ax.plot(pivots_aa, phot, "o", color="C3", ms=7, label="band fluxes ⟨f$_\\lambda$⟩")
    ax.axvspan(*muse_range, color="0.9", zorder=0, label="MUSE range")
    ax.set_ylim(0, top)
    ax.set_xlabel("wavelength [Å]")
    ax.set_ylabel("L$_\\odot$ Å$^{-1}$ per M$_\\odot$ formed")
    ax.legend(fontsize=8)
    return ax


def plot_noise(wave_aa, noiseless, noisy, snrs, ax=None, wave_range=(6400, 6800)):
    """One spectrum without noise and with noise at several S/N."""
    ax = _axes(ax, figsize=(10, 3.5))
    m = (wave_aa > wave_range[0]) & (wave_aa < wave_range[1])
    for f, s in zip(noisy, snrs):
        ax.plot(wave_aa[m], f[m], lw=0.6, alpha=0.8, label=f"S/N = {s:g}")
    ax.plot(wave_aa[m], noiseless[m], color="k", lw=1, label="noise-free")
    ax.set_xlabel("wavelength [Å]")
    ax.legend(fontsize=8)
    return ax


def plot_dataset_overview(data, fig=None):
    """Distributions of a synthetic set: ages, metallicities, SFH per bin, dust, S/N.

    ``data`` is the dict returned by :func:`sfh_ml.synthesis.dataset.read_dataset`.
    """
    import matplotlib.pyplot as plt

    fig = fig or plt.figure(figsize=(13, 7), constrained_layout=True)
    axs = fig.subplots(2, 3)
    fam = np.asarray(data["family"])
    for f in np.unique(fam):
        sel = fam == f
        axs[0, 0].hist(data["mw_log_age"][sel], bins=40, histtype="step", label=f"{f}, mass-weighted")
        axs[0, 0].hist(
            data["lw_log_age"][sel], bins=40, histtype="step", ls="--", label=f"{f}, light-weighted"
        )
        axs[0, 1].hist(data["mw_zh"][sel], bins=40, histtype="step", label=f)
    axs[0, 0].set_xlabel("log age [yr]")
    axs[0, 0].legend(fontsize=7)
    axs[0, 1].set_xlabel("mass-weighted [M/H]")
    axs[0, 1].legend(fontsize=8)
    edges = data["age_bins_yr"]
    centres = bin_centres_yr(edges)
    q = np.percentile(data["sfh"], [16, 50, 84], axis=0)
    axs[0, 2].fill_between(np.log10(centres), q[0], q[2], alpha=0.3, step="mid")
    axs[0, 2].plot(np.log10(centres), q[1], drawstyle="steps-mid")
    axs[0, 2].plot(np.log10(centres), data["sfh"].mean(axis=0), "k:", drawstyle="steps-mid", label="mean")
    axs[0, 2].set_yscale("symlog", linthresh=1e-3)
    axs[0, 2].set_xlabel("log age bin [yr]")
    axs[0, 2].set_ylabel("mass fraction (median, 16-84 %)")
    axs[0, 2].legend(fontsize=8)
    axs[1, 0].hist(data["tau_bc"], bins=30, histtype="step", label="τ$_{BC}$")
    axs[1, 0].hist(data["tau_ism"], bins=30, histtype="step", label="τ$_{ISM}$")
    axs[1, 0].set_xlabel("V-band optical depth")
    axs[1, 0].legend(fontsize=8)
    axs[1, 1].hist(np.log10(data["snr"]), bins=30, histtype="step")
    axs[1, 1].set_xlabel("log S/N per pixel")
    dominant = np.argmax(data["sfh"], axis=1)
    axs[1, 2].hist(np.log10(centres[dominant]), bins=np.log10(edges), histtype="stepfilled", alpha=0.6)
    axs[1, 2].set_xlabel("log age of the dominant bin [yr]")
    return fig


def plot_spectra_by_age(data, n_show=6, ax=None):
    """A few spectra of a set, from young to old mass-weighted age, each divided by its mean and offset.

    Parameters
    ----------
    data : dict
        :func:`sfh_ml.synthesis.dataset.read_dataset` output with ``wave_aa``, ``spectra`` and
        ``mw_log_age``.
    n_show : int
        Number of spectra, spread evenly in the order of mass-weighted age.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax, figsize=(11, 4))
    order = np.argsort(data["mw_log_age"])
    for k, i in enumerate(order[:: max(1, len(order) // n_show)][:n_show]):
        spec = data["spectra"][i]
        label = f"mass-weighted log age {data['mw_log_age'][i]:.2f}"
        ax.plot(data["wave_aa"], spec / np.nanmean(spec) + k, lw=0.5, label=label)
    ax.set(xlabel="wavelength [Å]", ylabel="flux / mean + offset")
    ax.legend(fontsize=7, loc="upper right")
    return ax


# ---------------------------------------------------------------------------------------------- networks
def plot_recovery(
    wave_aa, spectrum, pivots_aa, photometry, age_bins_yr, true_sfh, true_zh, pred, index=0, axs=None
):
    """The poster's Fig. 4 for one object: inputs, cumulative SFH and metallicity evolution.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
    spectrum : ndarray, shape (n_wave,)
        The network's input spectrum.
    pivots_aa, photometry : ndarray, shape (n_band,)
        Pivot wavelengths and input fluxes.
    age_bins_yr : ndarray, shape (n_bins + 1,)
    true_sfh, true_zh : ndarray, shape (n_bins,)
        Truth: mass fraction and [M/H] per bin.
    pred : dict of ndarray
        Output of :func:`sfh_ml.network.predict` (``sfh_cum``, ``sfh_cum_sigma``, ``zh``, ``zh_sigma``,
        each of shape (n_obj, n_bins)); object ``index`` is drawn.
    axs : sequence of three Axes, optional
    """
    import matplotlib.pyplot as plt

    if axs is None:
        _, axs = plt.subplots(1, 3, figsize=(14, 3.4), constrained_layout=True, width_ratios=[1.6, 1, 1])
    ax0, ax1, ax2 = axs
    norm = np.nanmean(spectrum)
    ax0.plot(wave_aa, spectrum / norm, color="0.3", lw=0.5)
    ax0.plot(pivots_aa, photometry / norm, "o", color="C3", ms=5)
    ax0.set_xlabel("wavelength [Å]")
    ax0.set_ylabel("flux / mean")
    ax0.set_yscale("log")
    # Fraction of the mass formed by look-back time edges[k] (the young edge of bin k): 1 - sum of the
    # younger bins; the predicted cumulative runs from young to old like the bins.
    edges = np.asarray(age_bins_yr, dtype=float)
    cum_true = 1.0 - np.concatenate([[0.0], np.cumsum(true_sfh)[:-1]])
    mean = 1.0 - np.concatenate([[0.0], pred["sfh_cum"][index][:-1]])
    sig = np.concatenate([[0.0], pred["sfh_cum_sigma"][index][:-1]])
    ax1.step(edges[:-1], cum_true, where="post", color="darkred", lw=1.8, label="input")
    ax1.step(edges[:-1], mean, where="post", color="lightcoral", lw=1.5, label="recovered")
    ax1.fill_between(
        edges[:-1],
        np.clip(mean - sig, 0, 1),
        np.clip(mean + sig, 0, 1),
        step="post",
        color="lightcoral",
        alpha=0.3,
    )
    _lookback_axis(ax1, "mass fraction formed")
    c = bin_centres_yr(edges)
    ax2.plot(c, true_zh, "o-", color="darkgreen", ms=3, label="input")
    ax2.plot(c, pred["zh"][index], "o-", color="limegreen", ms=3, label="recovered")
    ax2.fill_between(
        c,
        pred["zh"][index] - pred["zh_sigma"][index],
        pred["zh"][index] + pred["zh_sigma"][index],
        color="limegreen",
        alpha=0.25,
    )
    _lookback_axis(ax2, "[M/H]")
    return axs


def _lookback_axis(ax, ylabel):
    """Logarithmic look-back time running from old (left) to young (right), with a legend."""
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("look-back time [yr]")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def plot_one_to_one(true, pred, label, ax=None, color=None, lim=None):
    """Recovered against true values with the bias and robust scatter (1.4826 MAD) written on."""
    ax = _axes(ax, figsize=(4.2, 4))
    true, pred = np.asarray(true), np.asarray(pred)
    stats = scatter_stats(pred, true)
    lo, hi = lim or (min(true.min(), pred.min()), max(true.max(), pred.max()))
    ax.hexbin(true, pred, gridsize=40, extent=(lo, hi, lo, hi), mincnt=1, bins="log", cmap="Blues")
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(f"true {label}")
    ax.set_ylabel(f"recovered {label}")
    ax.text(
        0.04,
        0.94,
        f"bias {stats['median_bias']:+.3f}\nscatter {stats['nmad']:.3f}",
        transform=ax.transAxes,
        va="top",
        fontsize=9,
        color=color or "k",
    )
    return ax


def plot_per_bin_error(age_bins_yr, curves, ylabel, ax=None):
    """Error per age bin for several models: ``curves`` maps a label to an array of shape (n_bins,)."""
    ax = _axes(ax, figsize=(6, 3.6))
    c = bin_centres_yr(age_bins_yr)
    for label, y in curves.items():
        ax.plot(c, y, "o-", ms=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("age bin [yr]")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax


MEAN_QUANTITY_LABELS = {
    "mw_log_age": "mass-weighted log age",
    "lw_log_age": "light-weighted log age",
    "mw_zh": "mass-weighted [M/H]",
    "lw_zh": "light-weighted [M/H]",
}


def plot_scatter_by_group(metrics_by_model, quantity="mw_log_age", key="nmad", axs=None):
    """A statistic of a mean quantity against S/N and against the age of the dominant bin.

    Parameters
    ----------
    metrics_by_model : dict
        Model name -> :func:`sfh_ml.network.metrics.evaluate_predictions` output, computed with
        ``snr`` (so that it has ``by_snr``) on a set with a range of S/N.
    quantity : {"mw_log_age", "lw_log_age", "mw_zh", "lw_zh"}
    key : str
        The statistic (:func:`sfh_ml.network.metrics.scatter_stats` key), in dex.
    axs : pair of Axes, optional

    Returns
    -------
    pair of Axes
    """
    import matplotlib.pyplot as plt

    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
    labels = {"nmad": "scatter", "median_bias": "bias", "bias": "mean bias", "mae": "MAE", "std": "std"}
    ylabel = f"{labels.get(key, key)} of {MEAN_QUANTITY_LABELS.get(quantity, quantity)} (dex)"
    for name, m in metrics_by_model.items():
        by_snr, by_age = m["by_snr"], m["by_dominant_age"]
        snr_centres = snr_bin_centres(by_snr["snr_bins"])
        axs[0].plot(snr_centres, group_statistic(by_snr[quantity], key), "o-", label=name)
        axs[1].plot(by_age["bin_centres_yr"], group_statistic(by_age[quantity], key), "o-", label=name)
    axs[0].set(xscale="log", xlabel="S/N per pixel", ylabel=ylabel)
    axs[1].set(xscale="log", xlabel="age of the dominant bin [yr]", ylabel=ylabel)
    axs[0].legend(fontsize=8)
    return axs


def plot_learning_curve(n_train, curves, ax=None, ylabel="scatter (dex)"):
    """Errors against the number of training spectra, on log-log axes.

    Parameters
    ----------
    n_train : ndarray, shape (n_models,)
        Training-set sizes.
    curves : dict
        Label -> ndarray of shape (n_models,), e.g. from :func:`sfh_ml.network.metrics.learning_curve`.
    ax : Axes, optional
    ylabel : str

    Returns
    -------
    Axes
    """
    ax = _axes(ax, figsize=(6, 3.8))
    for (label, y), marker in zip(curves.items(), "os^vD"):
        ax.plot(n_train, y, f"{marker}-", label=label)
    ax.set(xscale="log", yscale="log", xlabel="training spectra", ylabel=ylabel)
    ax.legend(fontsize=8)
    return ax


def plot_history(history, ax=None, keys=("loss", "val_loss")):
    """Learning curves from a list of per-epoch dicts (``TrainingResult.history``) or a dict of lists."""
    ax = _axes(ax, figsize=(6, 3.6))
    if isinstance(history, list | tuple):
        history = {k: [row.get(k, np.nan) for row in history] for k in (history[0] if history else {})}
    for key in keys:
        if key in history:
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    return ax


def plot_validation_curves(histories, key, ax=None, ylabel=None):
    """One logged quantity per epoch for several training runs, on a log scale.

    Parameters
    ----------
    histories : dict
        Run name -> list of per-epoch dicts (``TrainingResult.history``).
    key : str
        The logged quantity, e.g. ``"val_sfh_cum_mae"``; runs without it are skipped.
    ax : Axes, optional
    ylabel : str, optional
        Default ``key``.

    Returns
    -------
    Axes
    """
    ax = _axes(ax, figsize=(6, 3.6))
    for name, history in histories.items():
        values = [row.get(key, np.nan) for row in history]
        if np.any(np.isfinite(values)):
            ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set(xlabel="epoch", ylabel=ylabel or key, yscale="log")
    ax.legend(fontsize=8)
    return ax


def plot_coverage(nominal, observed, labels, ax=None):
    """Calibration of the uncertainties: observed coverage against nominal for each output."""
    ax = _axes(ax, figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    for obs, label in zip(observed, labels):
        ax.plot(nominal, obs, "o-", ms=3, label=label)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage")
    ax.legend(fontsize=8)
    return ax


SPECTRAL_PREFIXES = ("stem", "conv", "tokens", "position", "attn", "spec_")


def _branch(name):
    if name in ("spectrum", "normalisation") or name.startswith(SPECTRAL_PREFIXES):
        return "spectrum"
    if name == "photometry" or name.startswith("phot_"):
        return "photometry"
    if "decoder" in name:
        return name.split("decoder")[0].rstrip("_") or "joint"
    return "shared"


def _blocks(model):
    """Consecutive layers merged into labelled blocks per branch (attention sub-layers into one)."""
    blocks = {}
    for layer in model.layers:
        name = layer.name
        if name == "decoders":  # v1: the two decoders' outputs side by side, nothing to draw
            continue
        if name == "attn_norm":
            key, label = name, "LayerNorm"
        elif name.startswith("attn") and "_" in name:
            key, label = name.split("_")[0], f"self-attention\nblock {name.split('_')[0][4:]}"
        elif "decoder" in name:
            head = name.split("decoder")[0].rstrip("_")
            key = head + "_decoder"
            label = {"sfh": "SFH decoder", "zh": "[M/H] decoder"}.get(head, "joint decoder\nSFH + [M/H]")
        elif name.startswith("phot_dense"):
            key, label = "phot_dense", "Dense encoder"
        else:
            key, label = name, f"{name}\n{layer.__class__.__name__}"
        branch = _branch(name)
        lst = blocks.setdefault(branch, [])
        if not lst or lst[-1][0] != key:
            lst.append([key, label, 0])
        lst[-1][2] += layer.count_params()
    return blocks


def plot_architecture(model, ax=None):
    """A block diagram of a network: its spectral and photometric branches, latent space and decoder(s).

    Layers are grouped by branch from their names (``stem``, ``conv*``, ``attn*``, ``phot_*``,
    ``*decoder*``...), with the number of parameters of each block.
    """
    from matplotlib.patches import FancyBboxPatch

    blocks = _blocks(model)
    ax = _axes(ax, figsize=(14, 4.2))
    colours = {
        "spectrum": "#cfe2f3",
        "photometry": "#fce5cd",
        "shared": "#d9ead3",
        "joint": "#ead1dc",
        "sfh": "#f4cccc",
        "zh": "#d9d2e9",
    }
    rows = {"spectrum": 2.0, "photometry": 0.0, "sfh": 2.0, "zh": 0.0, "joint": 1.0}
    pos = {}
    for branch in ("spectrum", "photometry"):
        for i, block in enumerate(blocks.get(branch, [])):
            pos[block[0]] = (i * 1.25, rows[branch])
    x = max(p[0] for p in pos.values()) + 1.4
    shared = [b for b in blocks.get("shared", []) if b[0] not in ("history", "sfh", "zh")]
    for block in shared:
        pos[block[0]] = (x, 1.0)
        x += 1.25
    decoders = [b for b in blocks if b in ("sfh", "zh", "joint")]
    for branch in decoders:
        for j, block in enumerate(blocks[branch]):
            pos[block[0]] = (x + j * 1.25, rows[branch])
    x += 1.35 * max(len(blocks[b]) for b in decoders)
    for key, y in (("history", 1.0), ("sfh", 1.6), ("zh", 0.4)):
        pos[key] = (x + (0 if key == "history" else 1.3), y)
    every = [(b, k, lab, n) for b in blocks for k, lab, n in blocks[b]]
    for branch, key, label, n in every:
        if key not in pos:
            continue
        cx, cy = pos[key]
        text = label + (f"\n{n:,} par." if n else "")
        ax.add_patch(
            FancyBboxPatch(
                (cx - 0.55, cy - 0.32),
                1.1,
                0.64,
                boxstyle="round,pad=0.03",
                fc=colours.get(branch, "#eeeeee"),
                ec="0.3",
                lw=0.8,
            )
        )
        ax.text(cx, cy, text, ha="center", va="center", fontsize=6.5)

    def arrow(a, b):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        ax.annotate("", xy=(x1 - 0.56, y1), xytext=(x0 + 0.56, y0), arrowprops=dict(arrowstyle="->", lw=0.7))

    for branch in ("spectrum", "photometry", *decoders):
        keys = [k for k, _, _ in blocks.get(branch, [])]
        for a, b in zip(keys[:-1], keys[1:]):
            arrow(a, b)
    if shared:
        for branch in ("spectrum", "photometry"):
            last = [k for k, _, _ in blocks[branch]][-1]
            arrow(last, shared[0][0])
        for a, b in zip([k for k, _, _ in shared][:-1], [k for k, _, _ in shared][1:]):
            arrow(a, b)
        for branch in decoders:
            arrow(shared[-1][0], blocks[branch][0][0])
            arrow(blocks[branch][-1][0], "history")
    arrow("history", "sfh")
    arrow("history", "zh")
    # the photometry input feeds the normalisation layer too
    ax.annotate(
        "",
        xy=pos["normalisation"],
        xytext=pos["photometry"],
        arrowprops=dict(arrowstyle="->", lw=0.5, ls=":", color="0.5"),
    )
    ax.set_xlim(-0.8, x + 2.0)
    ax.set_ylim(-0.6, 2.6)
    ax.axis("off")
    ax.set_title(f"{model.name}: {model.count_params():,} parameters")
    return ax


# ----------------------------------------------------------------------------------------- application


def _sky_axes(ax, wcs, figsize=(4.2, 3.8)):
    """Axes with the celestial WCS (matplotlib WCSAxes): RA and Dec ticks on the map."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig = plt.figure(figsize=figsize, constrained_layout=True)
        ax = fig.add_subplot(projection=wcs)
    return ax


def _radec_labels(ax):
    """RA/Dec axis labels of a WCSAxes (plain Axes get pixel labels)."""
    if hasattr(ax, "coords"):
        ax.coords[0].set_axislabel("RA")
        ax.coords[1].set_axislabel("Dec")
        # MUSE fields span arcseconds to arcminutes: tenths of a second keep neighbouring ticks distinct.
        ax.coords[0].set_major_formatter("hh:mm:ss.ss")
        ax.coords[1].set_major_formatter("dd:mm:ss.s")
        ax.coords[0].set_ticklabel(exclude_overlapping=True)
    else:
        ax.set_xlabel("x [spaxel]")
        ax.set_ylabel("y [spaxel]")


def plot_sky_map(
    image, wcs, ax=None, label="", cmap="viridis", vmin=None, vmax=None, title=None, norm=None, marks=None
):
    """One map on the sky, with RA and Dec from the cube's celestial WCS.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        NaN where there is no value (drawn blank).
    wcs : astropy.wcs.WCS
        Celestial WCS of the map (e.g. ``MuseCube.wcs`` or ``ApplicationOutputs.wcs``).
    ax : WCSAxes, optional
        Made with ``projection=wcs`` (created if omitted).
    label : str
        Colour-bar label, with the unit.
    cmap, vmin, vmax, norm :
        As for ``imshow``; ``vmin``/``vmax`` default to the 2nd and 98th percentiles.
    title : str, optional
    marks : dict of str -> (float, float), optional
        Labelled positions to mark, in pixels (x, y) from 0 (e.g. the regions whose SFHs are shown).

    Returns
    -------
    ax
    """
    import matplotlib.pyplot as plt

    ax = _sky_axes(ax, wcs)
    image = np.asarray(image, dtype=float)
    finite = image[np.isfinite(image)]
    if norm is None and finite.size:
        lo, hi = np.percentile(finite, [2, 98])
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    kw = dict(norm=norm) if norm is not None else dict(vmin=vmin, vmax=vmax)
    im = ax.imshow(image, origin="lower", cmap=cmap, interpolation="nearest", **kw)
    plt.colorbar(im, ax=ax, label=label, shrink=0.85, pad=0.02)
    for k, (name, (x, y)) in enumerate((marks or {}).items()):
        ax.plot(x, y, "o", mfc="none", mec=f"C{k}", mew=2, ms=12)
        ax.annotate(name, (x, y), xytext=(8, 8), textcoords="offset points", color=f"C{k}", fontsize=9)
    _radec_labels(ax)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_sky_maps(images, wcs, ncols=3, panel_size=(4.0, 3.6), suptitle=None):
    """Several maps of one field side by side, each with RA and Dec.

    Parameters
    ----------
    images : dict of str -> dict
        Title -> keyword arguments of :func:`plot_sky_map` (``image`` required; ``label``,
        ``cmap``, ``vmin``, ``vmax``, ``norm`` optional).
    wcs : astropy.wcs.WCS
    ncols : int
    panel_size : (float, float)
        Inches per panel.
    suptitle : str, optional

    Returns
    -------
    fig, list of axes
    """
    import matplotlib.pyplot as plt

    n = len(images)
    nrows = int(np.ceil(n / ncols))
    ncols = min(ncols, n)
    fig = plt.figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), constrained_layout=True)
    axes = []
    for i, (title, kw) in enumerate(images.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1, projection=wcs)
        kw = dict(kw)
        plot_sky_map(kw.pop("image"), wcs, ax=ax, title=title, **kw)
        axes.append(ax)
    if suptitle:
        fig.suptitle(suptitle)
    return fig, axes


def plot_bin_map(bin_id, wcs, ax=None, centres=None, seed=0, title=None):
    """Spatial bins on the sky: each bin a random colour, unbinned spaxels blank.

    Parameters
    ----------
    bin_id : ndarray of int, shape (ny, nx)
        Bin of each spaxel, -1 for none.
    wcs : astropy.wcs.WCS
    centres : (ndarray, ndarray), optional
        Pixel coordinates (x, y) of the bins' centres, drawn as dots.
    seed : int
        Seed of the colour shuffle (neighbouring bins get unrelated colours).
    title : str, optional

    Returns
    -------
    ax
    """
    ax = _sky_axes(ax, wcs)
    bin_id = np.asarray(bin_id)
    n = int(bin_id.max()) + 1
    shuffle = np.random.default_rng(seed).permutation(max(n, 1)) / max(n - 1, 1)
    image = np.where(bin_id >= 0, shuffle[np.clip(bin_id, 0, None)], np.nan)
    ax.imshow(image, origin="lower", cmap="tab20", interpolation="nearest", vmin=0, vmax=1)
    if centres is not None:
        ax.plot(centres[0], centres[1], ".", color="k", ms=1.5)
    _radec_labels(ax)
    ax.set_title(title or f"{n} bins", fontsize=10)
    return ax


def plot_cube_spectrum(wave_aa, flux, var=None, ax=None, label=None, sky_windows_aa=None, redshift=0.0):
    """An observed spectrum with its 1-sigma noise and the sky-line windows shaded.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Observed (air) wavelength, Angstrom.
    flux, var : ndarray, shape (n_wave,)
        Flux density and its variance (the cube's ``DATA`` and ``STAT``).
    label : str, optional
    sky_windows_aa : ndarray, shape (n_windows, 2), optional
        Observed-frame windows of strong sky lines (e.g. ``SKY_LINE_WINDOWS_AA``), shaded grey.
    redshift : float
        Systemic redshift: the top axis shows rest-frame wavelengths.

    Returns
    -------
    ax
    """
    ax = _axes(ax, figsize=(12, 3.4), constrained_layout=True)
    line = ax.plot(wave_aa, flux, lw=0.5, label=label)[0]
    if var is not None:
        ax.fill_between(wave_aa, -np.sqrt(var), np.sqrt(var), color=line.get_color(), alpha=0.25, lw=0)
    if sky_windows_aa is not None:
        for lo, hi in np.asarray(sky_windows_aa):
            ax.axvspan(lo, hi, color="0.85", lw=0, zorder=0)
    ax.axhline(0, color="0.5", lw=0.5)
    ax.set_xlim(wave_aa[0], wave_aa[-1])
    ax.set_xlabel("observed wavelength [Å] (grey: sky-line windows; band around 0: 1σ noise)")
    ax.set_ylabel("flux density")
    if redshift:
        top = ax.secondary_xaxis(
            "top", functions=(lambda w: w / (1 + redshift), lambda w: w * (1 + redshift))
        )
        top.set_xlabel("rest-frame wavelength [Å]")
    if label:
        ax.legend(fontsize=8, loc="upper right")
    return ax


def plot_radial_gradient(
    radius,
    recovered,
    true=None,
    recovered_err=None,
    fit_recovered=None,
    fit_true=None,
    ax=None,
    ylabel="",
    radius_unit="arcsec",
):
    """A quantity against galactocentric radius: recovered per bin (with errors), true, and fitted lines.

    Parameters
    ----------
    radius : ndarray, shape (n,)
        Deprojected radius of each bin.
    recovered : ndarray, shape (n,)
    true : ndarray, shape (n,), optional
        The truth in the same bins (a mock galaxy's).
    recovered_err : ndarray, shape (n,), optional
        1-sigma errors of ``recovered``.
    fit_recovered, fit_true : GradientFit, optional
        Lines from :func:`sfh_ml.observations.fit_gradient`, drawn and their slopes written on.
    ylabel : str
    radius_unit : str

    Returns
    -------
    ax
    """
    ax = _axes(ax, figsize=(5.5, 4), constrained_layout=True)
    radius = np.asarray(radius, dtype=float)
    r_line = np.linspace(0.0, np.nanmax(radius), 50)
    if true is not None:
        ax.plot(radius, true, ".", color="0.55", ms=3, label="true (per bin)")
    ax.errorbar(
        radius,
        recovered,
        yerr=recovered_err,
        fmt="o",
        ms=2.5,
        color="C0",
        ecolor="C0",
        elinewidth=0.4,
        alpha=0.6,
        label="recovered",
    )
    text = []
    for fit, colour, name in ((fit_true, "k", "true"), (fit_recovered, "C3", "recovered")):
        if fit is not None:
            ax.plot(r_line, fit(r_line), color=colour, lw=1.5, ls="--" if name == "true" else "-")
            text.append(f"{name}: {fit.slope:+.3g} ± {fit.slope_err:.2g} /{radius_unit}")
    ax.set_xlabel(f"deprojected radius [{radius_unit}]")
    ax.set_ylabel(ylabel)
    if text:
        ax.text(0.03, 0.03, "\n".join(text), transform=ax.transAxes, fontsize=8, va="bottom")
    ax.legend(fontsize=8, loc="upper right")
    return ax


def plot_cluster_ages(reference_age_myr, age_myr, age_err_dex=None, usable=None, ax=None, tolerance_dex=0.3):
    """Cluster ages from the network against a reference (the catalogue's SED fits), log-log.

    Parameters
    ----------
    reference_age_myr, age_myr : ndarray, shape (n,)
        Ages in Myr (non-finite or non-positive ones are not drawn).
    age_err_dex : ndarray, shape (n,), optional
        1-sigma error of log10 ``age_myr``.
    usable : ndarray of bool, shape (n,), optional
        Flagged clusters (False) are drawn as open markers.
    tolerance_dex : float
        Half-width of the shaded band of agreement.

    Returns
    -------
    ax
    """
    ax = _axes(ax, figsize=(4.6, 4.3), constrained_layout=True)
    ref, age = np.asarray(reference_age_myr, dtype=float), np.asarray(age_myr, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        x, y = np.log10(np.where(ref > 0, ref, np.nan)), np.log10(np.where(age > 0, age, np.nan))
    ok = np.ones(x.size, bool) if usable is None else np.asarray(usable, bool)
    err = None if age_err_dex is None else np.asarray(age_err_dex, dtype=float)
    finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]])
    lo, hi = (finite.min() - 0.3, finite.max() + 0.3) if finite.size else (0.0, 4.0)
    line = np.array([lo, hi])
    ax.fill_between(line, line - tolerance_dex, line + tolerance_dex, color="0.9", lw=0)
    ax.plot(line, line, "k--", lw=0.8)
    for sel, face, name in ((ok, "C0", "usable"), (~ok, "none", "flagged")):
        if sel.any():
            ax.errorbar(
                x[sel],
                y[sel],
                yerr=None if err is None else err[sel],
                fmt="o",
                mfc=face,
                mec="C0",
                ecolor="C0",
                elinewidth=0.7,
                label=name,
            )
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("log10 age, catalogue SED fit [Myr]")
    ax.set_ylabel("log10 mass-weighted age, network [Myr]")
    ax.legend(fontsize=8, loc="upper left", title=f"shaded: ±{tolerance_dex:g} dex", title_fontsize=8)
    return ax


def plot_region_histories(age_bins_yr, regions, axs=None):
    """Cumulative SFH and [M/H] per age bin of a few regions, each with its 1-sigma band.

    Parameters
    ----------
    age_bins_yr : ndarray, shape (n_bins + 1,)
    regions : dict of str -> mapping
        Label -> one row of the bins table (``sfh_cum``, ``sfh_cum_sigma``, ``zh``, ``zh_sigma``,
        each shape (n_bins,); ``sfh_cum`` runs from the youngest bin to the oldest like the bins).
    axs : two Axes, optional

    Returns
    -------
    axs
    """
    import matplotlib.pyplot as plt

    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
    ax1, ax2 = axs
    edges = np.asarray(age_bins_yr, dtype=float)
    c = bin_centres_yr(edges)
    for k, (label, row) in enumerate(regions.items()):
        colour = f"C{k}"
        # Fraction of the mass formed by look-back time edges[j]: 1 - (formed in the younger bins).
        mean = 1.0 - np.concatenate([[0.0], np.asarray(row["sfh_cum"], dtype=float)[:-1]])
        sig = np.concatenate([[0.0], np.asarray(row["sfh_cum_sigma"], dtype=float)[:-1]])
        ax1.step(edges[:-1], mean, where="post", color=colour, lw=1.5, label=label)
        ax1.fill_between(
            edges[:-1],
            np.clip(mean - sig, 0, 1),
            np.clip(mean + sig, 0, 1),
            step="post",
            color=colour,
            alpha=0.2,
        )
        zh, zs = np.asarray(row["zh"], dtype=float), np.asarray(row["zh_sigma"], dtype=float)
        ax2.plot(c, zh, "o-", color=colour, ms=3, label=label)
        ax2.fill_between(c, zh - zs, zh + zs, color=colour, alpha=0.2)
    _lookback_axis(ax1, "mass fraction formed")
    _lookback_axis(ax2, "[M/H] of the stars formed")
    return axs


def plot_young_sequence(
    library, zh_index=4, log_u=-2.5, axs=None, wave_range=(1700, 10000), zoom_aa=(4800, 6800)
):
    """The SSPs younger than 10 Myr, with the nebular emission of their birth clouds.

    Three panels: the stellar spectra per unit mass, coloured by age; the same ages in the optical
    with their nebular continuum and lines (Cloudy grids, drawn as Gaussians of the library's
    resolution); and the H-alpha equivalent width against age, which falls with the ionising photons.

    Parameters
    ----------
    library : SSPLibrary
        Its SSPs younger than 10 Myr (1 to 10 Myr, 0.1 dex) and the Cloudy grids at the same ages.
    zh_index : int
        Which [M/H] of the library (4: solar).
    log_u : float
        Ionisation parameter; the nearest value of the grid is drawn.
    axs : three Axes, optional
        Created in one row if omitted.
    wave_range, zoom_aa : (float, float)
        Wavelength ranges of the first and second panels, Angstrom.

    Returns
    -------
    axs
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import NullFormatter

    from .constants import BIRTH_CLOUD_AGE_YR, FWHM_TO_SIGMA, HALPHA_LABEL
    from .synthesis.nebular import add_lines

    if axs is None:
        _, axs = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True, width_ratios=[1.4, 1.4, 1])
    ax1, ax2, ax3 = axs
    w = library.wave_aa
    young = np.flatnonzero(library.age_yr <= BIRTH_CLOUD_AGE_YR * 1.001)
    u = int(np.argmin(np.abs(library.log_u - log_u)))
    ages = library.age_yr[young]
    norm = LogNorm(ages[0], ages[-1])
    cmap = plt.cm.viridis
    lam = library.line_wave_aa
    inside = (lam > zoom_aa[0]) & (lam < zoom_aa[1])
    ha = library.line_index(HALPHA_LABEL)
    near_ha = np.abs(w - lam[ha]) < 20
    full = (w > wave_range[0]) & (w < wave_range[1])
    zoom = (w > zoom_aa[0] - 10) & (w < zoom_aa[1] + 10)
    ew = np.full(ages.size, np.nan)
    for k in range(ages.size - 1, -1, -1):  # the oldest first: the strong lines of the youngest on top
        i, age = young[k], ages[k]
        stars = library.flux[i, zh_index].astype(float)
        colour = cmap(norm(age))
        ax1.plot(w[full], stars[full], color=colour, lw=0.7)
        total = stars.copy()
        n = np.flatnonzero(np.isclose(library.neb_age_yr, age, rtol=1e-3))
        if n.size:  # in the birth cloud: nebular continuum and lines of the same age
            total += library.neb_cont[n[0], zh_index, u]
            lum = library.line_lum[n[0], zh_index, u]
            sigma = np.interp(lam[inside], w, library.fwhm_aa) * FWHM_TO_SIGMA
            add_lines(total[None, :], w, lam[inside], lum[None, inside], sigma[None, :])
            ew[k] = lum[ha] / (stars + library.neb_cont[n[0], zh_index, u])[near_ha].mean()
        ax2.plot(w[zoom], total[zoom], color=colour, lw=0.7)
    ax1.set(yscale="log", xlabel="wavelength [Å]", ylabel="L$_\\odot$ Å$^{-1}$ M$_\\odot^{-1}$")
    ax1.set_title(f"stars, [M/H] = {library.zh[zh_index]:+.2f}")
    ax2.set(yscale="log", xlabel="wavelength [Å]", xlim=zoom_aa)
    ax2.set_title(f"stars + nebular emission, log U = {library.log_u[u]:.1f}")
    ok = np.isfinite(ew)
    ax3.plot(ages[ok] / 1e6, ew[ok], "o-", color="C3", ms=4)
    ax3.set(xscale="log", yscale="log", xlabel="age [Myr]", ylabel="EW(H$\\alpha$) [Å]")
    ax3.set_xticks([1, 2, 3, 5, 8], labels=["1", "2", "3", "5", "8"])
    ax3.xaxis.set_minor_formatter(NullFormatter())
    ax3.set_title("H$\\alpha$ equivalent width")
    plt.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=[ax1, ax2], label="age [yr]")
    return axs


# ------------------------------------------------------------------------- network against pPXF
# Figures of chapter 5. ``rows`` are the score rows of :func:`sfh_ml.fitting.compare_methods` (or
# :func:`sfh_ml.fitting.read_csv_rows` of its CSV); the helpers of :mod:`sfh_ml.fitting.compare` turn
# them into arrays.
STAT_LABELS = {"bias": "bias", "nmad": "NMAD", "std": "std", "mae": "mean abs. error"}
SCORE_LABELS = {**MEAN_QUANTITY_LABELS, "cum_sfh_mae": "cumulative-mass error"}


def _score_label(quantity, stat):
    if quantity == "cum_sfh_mae":  # the mean of each object's error is the "bias" of its row
        return "cumulative-mass error (mean)"
    unit = "dex" if quantity in MEAN_QUANTITY_LABELS else ""
    return f"{SCORE_LABELS.get(quantity, quantity)}: {STAT_LABELS.get(stat, stat)}" + (
        f" [{unit}]" if unit else ""
    )


def _score_level(quantity, level):
    return "object" if quantity == "cum_sfh_mae" else level


def _grouped_bars(ax, groups, series, log=False):
    """Bars of each series (label -> values per group) side by side within each group."""
    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    for k, (label, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, groups)
    if log:
        ax.set_yscale("log")
    return ax


def plot_regul_choice(grid, delta_chi2, threshold, chosen=None, ax=None):
    """The Delta chi^2 criterion: chi^2 increase against ``regul`` for each object, and sqrt(2 N).

    Parameters
    ----------
    grid : ndarray, shape (n_grid,)
        ``regul`` values.
    delta_chi2 : ndarray, shape (n_obj, n_grid)
        Increase of chi^2 over the unregularised fit (:func:`sfh_ml.fitting.regul_by_delta_chi2`).
    threshold : float
        sqrt(2 N_good), drawn as a horizontal line.
    chosen : float, optional
        The adopted ``regul``, drawn as a vertical line.
    """
    ax = _axes(ax, figsize=(5.5, 3.6))
    for i, curve in enumerate(np.atleast_2d(delta_chi2)):
        ax.plot(grid, curve, "o-", ms=3, lw=1, label=f"object {i}")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=r"$\sqrt{2 N_{\rm good}}$")
    if chosen is not None:
        ax.axvline(chosen, color="C3", ls=":", lw=1.5, label=f"regul = {chosen:g}")
    ax.set(xscale="log", yscale="symlog", xlabel="regul", ylabel=r"$\Delta\chi^2$")
    ax.legend(fontsize=7)
    return ax


def plot_method_histories(age_bins_yr, true_sfh, true_zh, preds, axs=None):
    """One object's cumulative mass and [M/H] history: the truth and each method's recovery.

    Parameters
    ----------
    age_bins_yr : ndarray, shape (n_bins + 1,)
    true_sfh, true_zh : ndarray, shape (n_bins,)
    preds : dict
        Method -> dict with ``sfh`` (n_bins,) or ``sfh_cum`` (n_bins,), and ``zh`` (n_bins,);
        ``sfh_cum_sigma`` and ``zh_sigma`` (the network's) are drawn as bands.
    axs : two Axes, optional
    """
    import matplotlib.pyplot as plt

    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(10, 3.4), constrained_layout=True)
    ax1, ax2 = axs
    edges = np.asarray(age_bins_yr, dtype=float)
    c = bin_centres_yr(edges)

    def formed(cum):  # mass fraction formed before look-back time edges[k], as in plot_recovery
        return 1.0 - np.concatenate([[0.0], np.asarray(cum, dtype=float)[:-1]])

    ax1.step(edges[:-1], formed(np.cumsum(true_sfh)), where="post", color="k", lw=2, label="truth")
    ax2.plot(c, true_zh, "o-", color="k", lw=2, ms=3, label="truth")
    for k, (label, p) in enumerate(preds.items()):
        cum = p["sfh_cum"] if p.get("sfh_cum") is not None else np.cumsum(p["sfh"])
        colour = f"C{k}"
        ax1.step(edges[:-1], formed(cum), where="post", color=colour, lw=1.3, label=label)
        if p.get("sfh_cum_sigma") is not None:
            sig = np.concatenate([[0.0], np.asarray(p["sfh_cum_sigma"])[:-1]])
            lo, hi = np.clip(formed(cum) - sig, 0, 1), np.clip(formed(cum) + sig, 0, 1)
            ax1.fill_between(edges[:-1], lo, hi, step="post", color=colour, alpha=0.2)
        ax2.plot(c, p["zh"], "o-", color=colour, lw=1.2, ms=3, label=label)
        if p.get("zh_sigma") is not None:
            zh, sig = np.asarray(p["zh"]), np.asarray(p["zh_sigma"])
            ax2.fill_between(c, zh - sig, zh + sig, color=colour, alpha=0.2)
    _lookback_axis(ax1, "mass fraction formed")
    _lookback_axis(ax2, "[M/H]")
    return axs


def plot_accuracy_vs_snr(
    rows,
    panels=(("mw_log_age", "bias"), ("mw_log_age", "nmad"), ("mw_zh", "bias"), ("mw_zh", "nmad"),
            ("cum_sfh_mae", "bias")),
    sample="all",
    level="exact",
    axs=None,
):  # fmt: skip
    """Bias and scatter of each method against S/N: one panel per (quantity, statistic), a line per method.

    ``("cum_sfh_mae", "bias")`` is the mean of each object's cumulative-mass error
    (:func:`sfh_ml.network.metrics.cumulative_sfh_mae`).
    """
    import matplotlib.pyplot as plt

    from .fitting.compare import score_series

    if axs is None:
        _, axs = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2), constrained_layout=True)
    for ax, (quantity, stat) in zip(np.atleast_1d(axs), panels):
        for k, (method, (snr, value)) in enumerate(
            score_series(rows, quantity, stat, sample, _score_level(quantity, level)).items()
        ):
            ax.plot(snr, value, "o-", ms=4, color=f"C{k}", label=method)
        if stat == "bias" and quantity != "cum_sfh_mae":
            ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set(xscale="log", xlabel="S/N per pixel")
        ax.set_ylabel(_score_label(quantity, stat), fontsize=9)
    np.atleast_1d(axs)[0].legend(fontsize=7)
    return axs


def plot_per_bin_by_method(rows, age_bins_yr, snrs, sample="all", cumulative=True, stat="mae", axs=None):
    """Per-age-bin SFH error of each method, one panel per S/N (:func:`plot_per_bin_error`)."""
    import matplotlib.pyplot as plt

    from .fitting.compare import per_bin_errors

    if axs is None:
        _, axs = plt.subplots(1, len(snrs), figsize=(4.2 * len(snrs), 3.3), constrained_layout=True,
                              sharey=True, squeeze=False)  # fmt: skip
        axs = axs[0]
    what = "cumulative mass" if cumulative else "mass fraction"
    for ax, snr in zip(np.atleast_1d(axs), snrs):
        curves = per_bin_errors(rows, snr, sample, cumulative=cumulative, stat=stat)
        plot_per_bin_error(age_bins_yr, curves, f"{what}: {STAT_LABELS.get(stat, stat)}", ax=ax)
        ax.set_title(f"S/N = {float(snr):g}", fontsize=10)
    return axs


def plot_young_old(
    rows,
    snr,
    panels=(("mw_log_age", "nmad"), ("mw_zh", "nmad"), ("cum_sfh_mae", "bias")),
    samples=("all", "young", "old"),
    level="exact",
    axs=None,
):
    """One statistic per method for all, young-dominated and old-dominated objects at one S/N.

    One panel per (quantity, statistic); within it a group of bars per sample, a bar per method (NaN,
    i.e. no bar, where a sample has no objects).
    """
    import matplotlib.pyplot as plt

    from .fitting.compare import sample_stats

    if axs is None:
        _, axs = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.2), constrained_layout=True)
    for ax, (quantity, stat) in zip(np.atleast_1d(axs), panels):
        series = sample_stats(rows, snr, quantity, stat, _score_level(quantity, level), samples)
        _grouped_bars(ax, list(samples), series)
        ax.set_ylabel(_score_label(quantity, stat), fontsize=9)
        ax.set_title(f"S/N = {float(snr):g}", fontsize=10)
    np.atleast_1d(axs)[0].legend(fontsize=7)
    return axs


def plot_speed(seconds_per_spectrum, workers=None, n_bins=40_000, n_spaxels=200_000, axs=None):
    """Seconds per spectrum of each method, and the time for one cube (its Voronoi bins, its spaxels).

    Parameters
    ----------
    seconds_per_spectrum : dict
        Method -> measured seconds per spectrum (on ``workers[method]`` cores at once: pPXF's
        one-thread seconds per fit, or a network's wall time per spectrum with all cores).
    workers : dict, optional
        Method -> cores the cube is shared among; a method left out counts once (its seconds are
        already the wall time on the machine, labelled "as measured").
    n_bins, n_spaxels : int
        Spectra of one cube: Voronoi bins and spaxels (a PHANGS-MUSE galaxy: ~4e4 and ~2e5).
    axs : two Axes, optional

    Returns
    -------
    axs; the cube's hours are ``seconds * n / workers / 3600`` (:func:`sfh_ml.fitting.cube_hours`).
    """
    import matplotlib.pyplot as plt

    from .fitting.compare import cube_hours

    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(11, 3.4), constrained_layout=True, width_ratios=[1, 1.3])
    ax1, ax2 = axs
    workers = workers or {}
    methods = list(seconds_per_spectrum)
    seconds = np.array([seconds_per_spectrum[m] for m in methods], dtype=float)
    cores = np.array([workers.get(m, 1) for m in methods], dtype=float)
    ax1.bar(methods, seconds, color=[f"C{k}" for k in range(len(methods))])
    ax1.set(yscale="log", ylabel="seconds per spectrum")
    ax1.tick_params(axis="x", labelrotation=20, labelsize=8)
    hours = {
        f"{n_bins:,} Voronoi bins": cube_hours(seconds, n_bins, cores),
        f"{n_spaxels:,} spaxels": cube_hours(seconds, n_spaxels, cores),
    }
    labels = [
        f"{m}\n({c:g} core{'s' if c > 1 else ''})" if m in workers else f"{m}\n(as measured)"
        for m, c in zip(methods, cores)
    ]
    _grouped_bars(ax2, labels, hours, log=True)
    ax2.set_ylabel("hours for one cube")
    ax2.tick_params(axis="x", labelsize=8)
    ax2.legend(fontsize=8)
    return axs


def plot_valley(
    rows_by_library,
    snr,
    panels=(("mw_log_age", "bias"), ("mw_log_age", "nmad"), ("mw_zh", "bias"), ("mw_zh", "nmad")),
    level="exact",
    axs=None,
):
    """The synthetic valley: each method on the training library's stars and on another library's.

    Parameters
    ----------
    rows_by_library : dict
        Library label (e.g. ``"E-MILES"``, ``"BC03"``) -> score rows of the same objects made with it.
    snr : float
    panels : sequence of (quantity, statistic)
    level : {"exact", "bin"}

    One panel per (quantity, statistic); a group of bars per method, a bar per library.
    """
    import matplotlib.pyplot as plt

    from .fitting.compare import sample_stats

    if axs is None:
        _, axs = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.3), constrained_layout=True)
    libraries = list(rows_by_library)
    per_lib = {lib: {} for lib in libraries}
    for ax, (quantity, stat) in zip(np.atleast_1d(axs), panels):
        methods = []
        for lib in libraries:
            per_lib[lib] = sample_stats(rows_by_library[lib], snr, quantity, stat,
                                        _score_level(quantity, level), ("all",))  # fmt: skip
            methods += [m for m in per_lib[lib] if m not in methods]
        series = {lib: [per_lib[lib].get(m, [np.nan])[0] for m in methods] for lib in libraries}
        _grouped_bars(ax, methods, series)
        if stat == "bias":
            ax.axhline(0.0, color="0.6", lw=0.8)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.set_ylabel(_score_label(quantity, stat), fontsize=9)
    np.atleast_1d(axs)[0].legend(title="stars", fontsize=7, title_fontsize=7)
    return axs


def plot_real_spectra_check(result, axs=None):
    """The network against pPXF on real spectra: mass-weighted log age and [M/H], with the 1:1 line.

    Parameters
    ----------
    result : dict
        From :func:`sfh_ml.fitting.real_spectra_check` (``network_*``, ``ppxf_*``, ``usable``, ``snr``).

    Returns
    -------
    ndarray of Axes, shape (2,)
    """
    import matplotlib.pyplot as plt

    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True)
    ok = np.asarray(result["usable"], dtype=bool)
    for ax, key, label in zip(
        axs, ("mw_log_age", "mw_zh"), ("mass-weighted log age [yr]", "mass-weighted [M/H] [dex]")
    ):
        x, y = result[f"ppxf_{key}"][ok], result[f"network_{key}"][ok]
        points = ax.scatter(x, y, c=result["snr"][ok], cmap="viridis", s=40, edgecolor="k", zorder=3)
        for i in np.flatnonzero(ok):
            ax.annotate(str(i), (result[f"ppxf_{key}"][i], result[f"network_{key}"][i]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
        lo, hi = np.nanmin(np.r_[x, y]) - 0.1, np.nanmax(np.r_[x, y]) + 0.1
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="1:1")
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=f"pPXF {label}", ylabel=f"network {label}")
        ax.set_aspect("equal")
        ax.legend(fontsize=8, loc="upper left")
    plt.colorbar(points, ax=axs, label="continuum S/N per pixel")
    return axs
