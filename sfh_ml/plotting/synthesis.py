"""Figures of chapter 1 (a synthetic training set): the SFH families, the SSP library and its seam,
the young SSPs with their birth clouds, the synthesis steps and the data sets."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from ..network.metrics import bin_centres_yr
from ._axes import (
    AGE_LABEL,
    FLUX_LABEL,
    LOOKBACK_LABEL,
    LUM_LABEL,
    WAVE_LABEL,
    axes_or_new,
    book_figure,
    legend_below,
    legend_panel,
    new_figure,
    snr_axis,
)
from .style import BOOK_WIDTH_IN

__all__ = [
    "plot_sfh_family",
    "plot_binned_histories",
    "plot_ssp_library",
    "plot_surviving_mass",
    "plot_seam",
    "plot_young_sequence",
    "plot_spectrum_components",
    "plot_broadening",
    "plot_photometry",
    "plot_noise",
    "plot_dataset_overview",
    "plot_spectra_by_age",
]

SEAM_AGE_YR = 10**7.8  # 63 Myr: BC03 below, E-MILES above (sfh_ml.synthesis.ssp)


def _wave_mask(wave_aa, wave_range):
    if wave_range is None:
        return np.ones(np.shape(wave_aa), bool)
    return (wave_aa > wave_range[0]) & (wave_aa < wave_range[1])


@book_figure
def plot_sfh_family(batch, ax_sfr=None, ax_cum=None, ax_zh=None, n_show=8, title=None):
    """Star formation rate, cumulative mass and metallicity track of the first ``n_show`` histories.

    Parameters
    ----------
    batch : SFHBatch
    ax_sfr, ax_cum, ax_zh : matplotlib Axes, optional
        Where to draw each panel; if all are omitted, a 2 x 2 figure at the book width is made
        with the colour key in the fourth panel.
    n_show : int
    title : str, optional

    Returns
    -------
    tuple of Axes
        The SFR, cumulative-mass and [M/H] panels (``ax.figure`` is the figure).
    """
    key = None
    if ax_sfr is None and ax_cum is None and ax_zh is None:
        fig, axs = plt.subplots(2, 2, figsize=(BOOK_WIDTH_IN, 5.6))
        ax_sfr, ax_cum, ax_zh, key = axs.ravel()
        key.axis("off")
        if title:
            fig.suptitle(title)
    age = np.logspace(6, np.log10(batch.age_grid_yr[-1]) - 1e-6, 600)
    sfr = batch.sfr(age)
    cum = 1.0 - batch.cumulative_at(age)  # fraction formed by then
    zh = batch.zh_at(cum)
    colours = plt.cm.viridis(np.linspace(0, 0.9, n_show))
    for i in range(min(n_show, len(batch))):
        kw = dict(color=colours[i], lw=1.2, label=f"history {i + 1}")
        if ax_sfr is not None:
            ax_sfr.plot(age, sfr[i] / sfr[i].max(), **kw)
        if ax_cum is not None:
            ax_cum.plot(age, cum[i], **kw)
        if ax_zh is not None:
            ax_zh.plot(age, zh[i], **kw)
    for ax, label in (
        (ax_sfr, "SFR / its maximum"),
        (ax_cum, "mass fraction formed"),
        (ax_zh, "[M/H] of the stars born (dex)"),
    ):
        if ax is not None:
            ax.set(xscale="log", xlabel=LOOKBACK_LABEL, ylabel=label)
    if key is not None:
        legend_panel(key, ax_sfr).set_title("histories (colour)")
    elif title and ax_sfr is not None:
        ax_sfr.set_title(title)
    return ax_sfr, ax_cum, ax_zh


@book_figure
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
    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 3.2))
    ax_sfh, ax_zh = axs
    centres = bin_centres_yr(age_bins_yr)
    sfh, zh = batch.mass_fractions(age_bins_yr), batch.zh_in_bins(age_bins_yr)
    for i in range(min(n_show, len(batch))):
        ax_sfh.step(centres, sfh[i], where="mid", color=f"C{i}", label=f"history {i + 1}")
        ax_zh.step(centres, zh[i], where="mid", color=f"C{i}")
    ax_sfh.set(xscale="log", xlabel=LOOKBACK_LABEL, ylabel="sfh: mass fraction in the bin")
    ax_zh.set(xscale="log", xlabel=LOOKBACK_LABEL, ylabel="zh: [M/H] of the stars formed (dex)")
    ax_sfh.legend()
    return axs


@book_figure
def plot_ssp_library(library, zh_index=4, ax=None, wave_range=(1700, 10000), norm_aa=5500.0):
    """SSP spectra of one metallicity, coloured by age, normalised at ``norm_aa``.

    Parameters
    ----------
    library : SSPLibrary
    zh_index : int
        Which [M/H] of the library.
    ax : Axes, optional
    wave_range : (float, float)
        Wavelength range drawn, Angstrom.
    norm_aa : float
        Wavelength (Angstrom) where each spectrum is divided by its flux.

    Returns
    -------
    Axes
    """
    ax = axes_or_new(ax, 4.2)
    w = library.wave_aa
    m = _wave_mask(w, wave_range)
    i0 = np.argmin(np.abs(w - norm_aa))
    cmap = plt.cm.plasma
    norm = LogNorm(library.age_yr[0], library.age_yr[-1])
    for k, age in enumerate(library.age_yr):
        f = library.flux[k, zh_index]
        ax.plot(w[m], f[m] / f[i0], color=cmap(norm(age)), lw=0.6)
    ax.set(yscale="log", xlabel=WAVE_LABEL, ylabel=f"flux / flux at {norm_aa:.0f} Å")
    ax.set_title(f"SSPs of [M/H] = {library.zh[zh_index]:+.2f}: BC03 below 63 Myr, E-MILES above")
    ax.figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=AGE_LABEL)
    return ax


@book_figure
def plot_surviving_mass(library, ax=None, seam_age_yr=SEAM_AGE_YR):
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
    ax = axes_or_new(ax, 3.8)
    for j, zh in enumerate(library.zh):
        ax.plot(library.age_yr, library.mstar_frac[:, j], label=f"[M/H] = {zh:+.2f}")
    ax.axvline(seam_age_yr, color="0.6", ls=":", label="BC03 | E-MILES seam")
    ax.set(xscale="log", xlabel=AGE_LABEL, ylabel="surviving mass / mass formed")
    ax.legend(ncols=2, loc="lower left")
    return ax


@book_figure
def plot_seam(library, zh_index=4, ax=None, wave_range=(3800, 9300), n_each=3):
    """Spectra just below (BC03, dashed) and above (E-MILES) the 63 Myr seam.

    Parameters
    ----------
    library : SSPLibrary
    zh_index : int
    ax : Axes, optional
    wave_range : (float, float)
        Angstrom.
    n_each : int
        Ages drawn on each side of the seam.

    Returns
    -------
    Axes
    """
    ax = axes_or_new(ax, 4.2)
    w = library.wave_aa
    m = _wave_mask(w, wave_range)
    k = int(np.argmin(np.abs(library.age_yr - SEAM_AGE_YR)))
    for j in range(k - n_each, k + n_each):
        src = "BC03 (scaled)" if j < k else "E-MILES"
        ax.plot(
            w[m],
            library.flux[j, zh_index, m],
            "--" if j < k else "-",
            lw=0.7,
            label=f"{library.age_yr[j] / 1e6:.0f} Myr, {src}",
        )
    ax.set(xlabel=WAVE_LABEL, ylabel=f"luminosity ({LUM_LABEL})", title="Across the 63 Myr seam")
    ax.legend(ncols=2)
    return ax


@book_figure
def plot_young_sequence(
    library, zh_index=4, log_u=-2.5, axs=None, wave_range=(1700, 10000), zoom_aa=(4800, 6800)
):
    """The SSPs younger than 10 Myr, with the nebular emission of their birth clouds.

    Three panels: the stellar spectra per unit mass, coloured by age (across the top); the same ages
    in the optical with their nebular continuum and lines (Cloudy grids, drawn as Gaussians of the
    library's resolution); and the H-alpha equivalent width against age, which falls with the
    ionising photons.

    Parameters
    ----------
    library : SSPLibrary
        Its SSPs younger than 10 Myr (1 to 10 Myr, 0.1 dex) and the Cloudy grids at the same ages.
    zh_index : int
        Which [M/H] of the library (4: solar).
    log_u : float
        Ionisation parameter; the nearest value of the grid is drawn.
    axs : three Axes, optional
        Created (the first across the top, two below) if omitted.
    wave_range, zoom_aa : (float, float)
        Wavelength ranges of the first and second panels, Angstrom.

    Returns
    -------
    axs
    """
    from ..constants import BIRTH_CLOUD_AGE_YR, FWHM_TO_SIGMA, HALPHA_LABEL
    from ..synthesis.nebular import add_lines, birth_cloud_line_ew

    if axs is None:
        fig = new_figure(6.4)
        mosaic = fig.subplot_mosaic([["stars", "stars"], ["lines", "ew"]])
        axs = mosaic["stars"], mosaic["lines"], mosaic["ew"]
    ax1, ax2, ax3 = axs
    w = library.wave_aa
    young = np.flatnonzero(library.age_yr <= BIRTH_CLOUD_AGE_YR * 1.001)
    u = int(np.argmin(np.abs(library.log_u - log_u)))
    ages = library.age_yr[young]
    norm = LogNorm(ages[0], ages[-1])
    cmap = plt.cm.viridis
    lam = library.line_wave_aa
    inside = (lam > zoom_aa[0]) & (lam < zoom_aa[1])
    full = _wave_mask(w, wave_range)
    zoom = (w > zoom_aa[0] - 10) & (w < zoom_aa[1] + 10)
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
        ax2.plot(w[zoom], total[zoom], color=colour, lw=0.7)
    ax1.set(yscale="log", xlabel=WAVE_LABEL, ylabel=f"stars ({LUM_LABEL})")
    ax1.set_title(f"stars, [M/H] = {library.zh[zh_index]:+.2f}")
    ax2.set(yscale="log", xlabel=WAVE_LABEL, xlim=zoom_aa, ylabel=f"stars + gas ({LUM_LABEL})")
    ax2.set_title(f"with the birth cloud, log U = {library.log_u[u]:.1f}")
    ew_age_yr, ew_aa = birth_cloud_line_ew(library, HALPHA_LABEL, zh_index, log_u)
    ax3.plot(ew_age_yr / 1e6, ew_aa, "o-", color="C3", ms=4)
    ax3.set(xscale="log", yscale="log", xlabel="age of the stars (Myr)", ylabel="EW(H$\\alpha$) (Å)")
    ax3.set_xticks([1, 2, 3, 5, 8], labels=["1", "2", "3", "5", "8"])
    ax3.xaxis.set_minor_formatter(NullFormatter())
    ax3.set_title("H$\\alpha$ equivalent width")
    ax1.figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=[ax1, ax2], label=AGE_LABEL)
    return axs


@book_figure
def plot_spectrum_components(wave_aa, out, index=0, ax=None, wave_range=None, zoom_aa=None):
    """Noise-free spectrum of one object with its stellar, nebular-continuum and line parts.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Angstrom.
    out : dict
        Returned by ``Synthesizer(..., components=True)``: ``dust_free``, ``spectra_noiseless``,
        ``stellar``, ``nebular_continuum``, ``emission_lines``, each shape (n_obj, n_wave), in
        L_sun / A per M_sun formed.
    index : int
        The object drawn.
    ax : Axes, optional
    wave_range : (float, float), optional
        Angstrom; all of ``wave_aa`` if omitted.
    zoom_aa : (float, float), optional
        With ``ax`` omitted: a second panel below, on this range (Angstrom).

    Returns
    -------
    Axes, or pair of Axes with ``zoom_aa``
    """
    owns = ax is None
    if owns:
        fig = new_figure(6.2 if zoom_aa is not None else 3.8)
        axs = fig.subplots(2 if zoom_aa is not None else 1, 1, squeeze=False)[:, 0]
    else:
        axs = [ax]
    parts = (
        ("dust_free", "0.6", "without dust"),
        ("spectra_noiseless", "k", "total"),
        ("stellar", "C0", "stars"),
        ("nebular_continuum", "C1", "nebular continuum"),
        ("emission_lines", "C3", "emission lines"),
    )
    for a, rng in zip(axs, (wave_range, zoom_aa)):
        m = _wave_mask(wave_aa, rng)
        for key, colour, label in parts:
            a.plot(wave_aa[m], out[key][index][m], color=colour, lw=0.8, label=label)
        total = out["spectra_noiseless"][index][m]
        a.set(
            yscale="log",
            ylim=(np.median(total) * 3e-3, total.max() * 2),
            xlabel=WAVE_LABEL,
            ylabel=FLUX_LABEL,
        )
    if owns:
        axs[0].set_title("the spectrum and its parts")
        if zoom_aa is not None:
            axs[1].set_title("H$\\alpha$, [N II] and [S II]")
    if owns:
        legend_below(axs[0].figure, axs[0], ncol=3)
    else:
        axs[0].legend(loc="lower right")
    return (axs[0], axs[1]) if len(axs) == 2 else axs[0]


@book_figure
def plot_broadening(
    library_wave,
    library_flux,
    muse_wave,
    muse_flux,
    ax=None,
    wave_range=(5100, 5300),
    lsf_fwhm_aa=None,
    title=None,
):
    """A stretch of spectrum at the library resolution and after the MUSE LSF + velocity dispersion.

    Parameters
    ----------
    library_wave, library_flux : ndarray, shape (n_lw,)
        Library-resolution spectrum (Angstrom; L_sun / A per M_sun formed).
    muse_wave, muse_flux : ndarray, shape (n_wave,)
        The same on the MUSE grid after the broadening.
    ax : Axes, optional
    wave_range : (float, float)
        Angstrom.
    lsf_fwhm_aa : ndarray, shape (n_wave,), optional
        With ``ax`` omitted: the MUSE LSF FWHM (Angstrom) at ``muse_wave``, e.g.
        ``muse_lsf_fwhm(muse_wave)``, drawn in a panel above.
    title : str, optional

    Returns
    -------
    Axes
        The stretch of spectrum (the LSF panel, when drawn, is ``ax.figure.axes[0]``).
    """
    if ax is None:
        fig = new_figure(5.4 if lsf_fwhm_aa is not None else 3.4)
        if lsf_fwhm_aa is not None:
            ax_lsf, ax = fig.subplots(2, 1, height_ratios=[1, 1.6])
            ax_lsf.plot(muse_wave, lsf_fwhm_aa, color="C0")
            ax_lsf.set(xlabel=WAVE_LABEL, ylabel="MUSE LSF FWHM (Å)")
        else:
            ax = fig.add_subplot()
    m1 = _wave_mask(library_wave, wave_range)
    m2 = _wave_mask(muse_wave, wave_range)
    ax.plot(library_wave[m1], library_flux[m1], color="0.5", lw=0.8, label="library resolution (2.5 Å)")
    ax.plot(muse_wave[m2], muse_flux[m2], color="C3", lw=1.2, label="MUSE LSF ⊕ σ★, MUSE pixels")
    ax.set(xlabel=WAVE_LABEL, ylabel=FLUX_LABEL)
    if title:
        ax.set_title(title)
    ax.legend(loc="lower left")
    return ax


@book_figure
def plot_photometry(wave_aa, flux, pivots_aa, phot, filters, ax=None, muse_range=(4750, 9350)):
    """Full-range spectrum, the filter curves and the five band fluxes at their pivot wavelengths.

    Parameters
    ----------
    wave_aa, flux : ndarray, shape (n_lw,)
        Angstrom; L_sun / A per M_sun formed.
    pivots_aa, phot : ndarray, shape (n_band,)
        Pivot wavelengths (Angstrom) and band-averaged fluxes (same unit as ``flux``).
    filters : sequence of str
        The filters' names (pyphot), e.g. ``PHANGS_FILTERS``; keyed by colour in the legend.
    ax : Axes, optional
    muse_range : (float, float)
        The MUSE range, shaded (Angstrom).

    Returns
    -------
    Axes
    """
    from ..synthesis.photometry import load_filters

    owns = ax is None
    ax = axes_or_new(ax, 4.4)
    ax.axvspan(*muse_range, color="0.9", zorder=0, label="MUSE range")
    top = 2.0 * max(np.nanpercentile(flux, 98), np.nanmax(phot))  # strong lines run off the top
    for k, ((fw, ft), name) in enumerate(zip(load_filters(filters), filters)):
        # Filters named in the legend (no text on the plot: neighbouring curves overlap).
        ax.fill_between(
            fw, 0, ft / ft.max() * top * 0.3, color=f"C{k}", alpha=0.35, lw=0, label=name.split("_")[-1]
        )
    ax.plot(wave_aa, flux, color="k", lw=0.5, label="spectrum")
    ax.plot(pivots_aa, phot, "o", mfc="w", mec="k", mew=1.5, ms=7, label="band fluxes ⟨f$_\\lambda$⟩")
    ax.set(ylim=(0, top), xlabel=WAVE_LABEL, ylabel=FLUX_LABEL)
    legend_below(ax.figure, ax, ncol=4, owns_figure=owns)
    return ax


@book_figure
def plot_noise(wave_aa, noiseless, noisy, snrs, ax=None, wave_range=(6400, 6800)):
    """One spectrum without noise and with noise at several S/N, on the continuum's scale.

    The y-range follows the continuum and the widest noise (the emission lines run off the top):
    what the noise does to the spectrum the network sees.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Angstrom.
    noiseless : ndarray, shape (n_wave,)
        L_sun / A per M_sun formed.
    noisy : sequence of ndarray, shape (n_wave,)
        The same with noise, one per S/N.
    snrs : sequence of float
    ax : Axes, optional
    wave_range : (float, float)
        Angstrom.

    Returns
    -------
    Axes
    """
    owns = ax is None
    ax = axes_or_new(ax, 3.8)
    m = _wave_mask(wave_aa, wave_range)
    for k in np.argsort(snrs):  # the noisiest underneath
        ax.plot(wave_aa[m], noisy[k][m], lw=0.7, color=f"C{k}", label=f"S/N = {snrs[k]:g}", zorder=2)
    ax.plot(wave_aa[m], noiseless[m], color="k", lw=0.8, ls="--", label="noise-free", zorder=3)
    # The continuum's level and the widest noise (robust: the lines do not count) set the y-range.
    cont = np.median(noiseless[m])
    spread = max([1.4826 * np.median(np.abs(np.asarray(f)[m] - noiseless[m])) for f in noisy] + [0.02 * cont])
    ax.set_ylim(cont - 3.5 * spread, cont + 4.5 * spread)
    ax.set(xlabel=WAVE_LABEL, ylabel=FLUX_LABEL, title="the continuum and its noise (lines run off the top)")
    if owns:
        legend_below(ax.figure, ax, ncol=len(snrs) + 1)
    else:
        ax.legend(ncols=2)
    return ax


@book_figure
def plot_dataset_overview(data, fig=None):
    """Distributions of a synthetic set: ages, metallicities, SFH per bin, dust, S/N, dominant bin.

    Parameters
    ----------
    data : dict
        Returned by :func:`sfh_ml.synthesis.store.read_dataset`: ``family``, ``mw_log_age``,
        ``lw_log_age``, ``mw_zh``, ``age_bins_yr``, ``sfh``, ``tau_bc``, ``tau_ism``, ``snr``.
    fig : Figure, optional
        Where to draw the 3 x 2 panels (a new one at the book width if omitted).

    Returns
    -------
    Figure
    """
    fig = fig or new_figure(8.4)
    axs = fig.subplots(3, 2)
    fam = np.asarray(data["family"])
    families = np.unique(fam)
    for k, f in enumerate(families):
        sel = fam == f
        axs[0, 0].hist(data["mw_log_age"][sel], bins=40, histtype="step", color=f"C{k}")
        axs[0, 0].hist(data["lw_log_age"][sel], bins=40, histtype="step", ls="--", color=f"C{k}")
        axs[0, 1].hist(data["mw_zh"][sel], bins=40, histtype="step", color=f"C{k}", label=str(f))
    weights = [Line2D([], [], color="k", ls=ls) for ls in ("-", "--")]
    axs[0, 0].legend(weights, ["mass-weighted", "light-weighted"], loc="upper left")
    axs[0, 0].set(xlabel="mean log$_{10}$(age / yr)", ylabel="objects")
    axs[0, 1].set(xlabel="mass-weighted [M/H] (dex)", ylabel="objects")
    axs[0, 1].legend(title="family (colour)")
    edges = data["age_bins_yr"]
    centres = bin_centres_yr(edges)
    q = np.percentile(data["sfh"], [16, 50, 84], axis=0)
    axs[1, 0].fill_between(centres, q[0], q[2], alpha=0.3, step="mid", label="16-84 %")
    axs[1, 0].plot(centres, q[1], drawstyle="steps-mid", label="median")
    axs[1, 0].plot(centres, data["sfh"].mean(axis=0), "k:", drawstyle="steps-mid", label="mean")
    axs[1, 0].set(xscale="log", xlabel=LOOKBACK_LABEL, ylabel="mass fraction in the bin")
    axs[1, 0].set_yscale("symlog", linthresh=1e-3)
    axs[1, 0].set_ylim(bottom=0.0)
    axs[1, 0].legend(loc="upper left")
    dominant = np.argmax(data["sfh"], axis=1)
    axs[1, 1].hist(centres[dominant], bins=edges, histtype="stepfilled", alpha=0.6)
    axs[1, 1].set(xscale="log", xlabel="look-back time of the dominant bin (yr)", ylabel="objects")
    axs[2, 0].hist(data["tau_bc"], bins=30, histtype="step", label="τ$_{BC}$ (birth cloud)")
    axs[2, 0].hist(data["tau_ism"], bins=30, histtype="step", label="τ$_{ISM}$ (diffuse)")
    axs[2, 0].set(xlabel="V-band optical depth", ylabel="objects")
    axs[2, 0].legend()
    snr = np.asarray(data["snr"], dtype=float)
    axs[2, 1].hist(snr, bins=np.geomspace(snr.min(), snr.max() * 1.001, 30), histtype="step")
    snr_axis(axs[2, 1], [s for s in (3, 5, 10, 20, 50, 100, 200) if snr.min() <= s <= snr.max()])
    axs[2, 1].set_ylabel("objects")
    return fig


@book_figure
def plot_spectra_by_age(data, n_show=6, ax=None, clip=3.0):
    """A few spectra of a set, from young to old mass-weighted age, each divided by its median and
    offset by one.

    The median (not the mean) sets the scale, so that strong emission lines do not shrink a young
    spectrum, and the y-range stops ``clip`` above each continuum: the lines run off the top.

    Parameters
    ----------
    data : dict
        :func:`sfh_ml.synthesis.store.read_dataset` output with ``wave_aa`` (Angstrom),
        ``spectra`` (n_obj, n_wave) and ``mw_log_age``.
    n_show : int
        Number of spectra, spread evenly in the order of mass-weighted age.
    ax : Axes, optional
    clip : float
        Headroom above the top spectrum's continuum, in units of its median.

    Returns
    -------
    Axes
    """
    ax = axes_or_new(ax, 4.6)
    order = np.argsort(data["mw_log_age"])
    lo, hi = np.inf, -np.inf
    for k, i in enumerate(order[:: max(1, len(order) // n_show)][:n_show]):
        spec = np.asarray(data["spectra"][i], dtype=float)
        y = spec / np.nanmedian(spec) + k
        ax.plot(data["wave_aa"], y, lw=0.5, label=f"log$_{{10}}$(age / yr) = {data['mw_log_age'][i]:.2f}")
        p1, p50 = np.nanpercentile(y, [1, 50])
        lo, hi = min(lo, p1), max(hi, min(np.nanmax(y), p50 + clip))
    ax.set_ylim(lo - 0.2, hi + 0.2)
    ax.set(xlabel=WAVE_LABEL, ylabel="flux / median + offset")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], title="mass-weighted", loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax
