"""Figures of chapter 4 (application to a galaxy): maps on the sky, the spatial bins, a cube's
spectra, radial gradients, cluster ages, the histories of a few regions, and the histories of
spectra of any instrument against pPXF's."""

import matplotlib.pyplot as plt
import numpy as np

from ..network.metrics import bin_centres_yr
from ._axes import axes_or_new, book_figure, formed_by_edges, lookback_axis, step_band
from .style import BOOK_WIDTH_IN

__all__ = [
    "plot_sky_map",
    "plot_sky_maps",
    "plot_bin_map",
    "plot_cube_spectrum",
    "plot_radial_gradient",
    "plot_cluster_ages",
    "plot_region_histories",
    "plot_spectra_predictions",
]

SKY_PANEL_HEIGHT_IN = 3.3  # one row of maps


def _sky_axes(ax, wcs, height_in=4.2):
    """Axes with the celestial WCS (matplotlib WCSAxes): RA and Dec ticks on the map."""
    if ax is None:
        ax = plt.figure(figsize=(BOOK_WIDTH_IN, height_in)).add_subplot(projection=wcs)
    return ax


def _radec_labels(ax):
    """RA/Dec axis labels of a WCSAxes (plain Axes get pixel labels)."""
    if hasattr(ax, "coords"):
        ax.coords[0].set_axislabel("RA (J2000)")
        ax.coords[1].set_axislabel("Dec (J2000)")
        # MUSE fields span arcseconds to arcminutes: tenths of a second keep neighbouring ticks distinct.
        ax.coords[0].set_major_formatter("hh:mm:ss.s")
        ax.coords[1].set_major_formatter("dd:mm:ss")
        ax.coords[0].set_ticks(number=3)
        ax.coords[1].set_ticks(number=4)
        ax.coords[0].set_ticklabel(exclude_overlapping=True)
        ax.coords[1].set_ticklabel(exclude_overlapping=True)
    else:
        ax.set_xlabel("x (spaxel)")
        ax.set_ylabel("y (spaxel)")


@book_figure
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
        Made with ``projection=wcs`` (created at the book width if omitted).
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
    ax = _sky_axes(ax, wcs)
    image = np.asarray(image, dtype=float)
    finite = image[np.isfinite(image)]
    if norm is None and finite.size:
        lo, hi = np.percentile(finite, [2, 98])
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    kw = dict(norm=norm) if norm is not None else dict(vmin=vmin, vmax=vmax)
    im = ax.imshow(image, origin="lower", cmap=cmap, interpolation="nearest", **kw)
    ax.figure.colorbar(im, ax=ax, label=label, shrink=0.9, pad=0.02)
    for k, (name, (x, y)) in enumerate((marks or {}).items()):
        ax.plot(x, y, "o", mfc="none", mec=f"C{k}", mew=2, ms=12, label=name)
    if marks:
        ax.legend(loc="upper right", title="regions")
    _radec_labels(ax)
    if title:
        ax.set_title(title)
    return ax


@book_figure
def plot_sky_maps(images, wcs, ncols=2, panel_size=None, suptitle=None):
    """Several maps of one field, two per row at the book width, each with RA and Dec.

    Parameters
    ----------
    images : dict of str -> dict
        Title -> keyword arguments of :func:`plot_sky_map` (``image`` required; ``label``,
        ``cmap``, ``vmin``, ``vmax``, ``norm`` optional).
    wcs : astropy.wcs.WCS
    ncols : int
        Maps per row; at most 2 (more would not be readable at the book width).
    panel_size : (float, float), optional
        Inches per panel: only its aspect is kept, the width being the book width / ``ncols``.
    suptitle : str, optional

    Returns
    -------
    fig, list of axes
    """
    n = len(images)
    ncols = max(1, min(ncols, 2, n))
    nrows = int(np.ceil(n / ncols))
    width = BOOK_WIDTH_IN / ncols
    height = SKY_PANEL_HEIGHT_IN if panel_size is None else width * panel_size[1] / panel_size[0]
    fig = plt.figure(figsize=(BOOK_WIDTH_IN, height * nrows + (0.3 if suptitle else 0)))
    axes = []
    for i, (title, kw) in enumerate(images.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1, projection=wcs)
        kw = dict(kw)
        plot_sky_map(kw.pop("image"), wcs, ax=ax, title=title, **kw)
        axes.append(ax)
    if suptitle:
        fig.suptitle(suptitle)
    return fig, axes


@book_figure
def plot_bin_map(bin_id, wcs, ax=None, centres=None, seed=0, title=None):
    """Spatial bins on the sky: each bin a random colour, unbinned spaxels blank.

    Parameters
    ----------
    bin_id : ndarray of int, shape (ny, nx)
        Bin of each spaxel, -1 for none.
    wcs : astropy.wcs.WCS
    ax : WCSAxes, optional
    centres : (ndarray, ndarray), optional
        Pixel coordinates (x, y) of the bins' centres, drawn as dots.
    seed : int
        Seed of the colour shuffle (neighbouring bins get unrelated colours: the colours mean
        nothing but "another bin", hence no colour bar).
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
    ax.set_title(title or f"{n} bins")
    return ax


@book_figure
def plot_cube_spectrum(
    wave_aa, flux, var=None, ax=None, label=None, sky_windows_aa=None, redshift=0.0, flux_unit=None
):
    """An observed spectrum with its 1-sigma noise and the sky-line windows shaded.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Observed (air) wavelength, Angstrom.
    flux, var : ndarray, shape (n_wave,)
        Flux density and its variance (the cube's ``DATA`` and ``STAT``).
    ax : Axes, optional
        Draw on it (e.g. a second spectrum on the first's Axes).
    label : str, optional
    sky_windows_aa : ndarray, shape (n_windows, 2), optional
        Observed-frame windows of strong sky lines (e.g. ``SKY_LINE_WINDOWS_AA``), shaded grey.
    redshift : float
        Systemic redshift: the top axis shows rest-frame wavelengths.
    flux_unit : str, optional
        The cube's flux unit (``MuseCube.flux_unit``), written on the y-axis.

    Returns
    -------
    ax
    """
    first = ax is None or not ax.lines
    ax = axes_or_new(ax, 3.6)
    line = ax.plot(wave_aa, flux, lw=0.5, label=label)[0]
    if var is not None:
        ax.fill_between(wave_aa, -np.sqrt(var), np.sqrt(var), color=line.get_color(), alpha=0.25, lw=0)
    if first:
        if sky_windows_aa is not None:
            for lo, hi in np.asarray(sky_windows_aa):
                ax.axvspan(lo, hi, color="0.85", lw=0, zorder=0)
        ax.axhline(0, color="0.5", lw=0.5)
        ax.set_xlim(wave_aa[0], wave_aa[-1])
        ax.set_xlabel("observed wavelength (Å); grey: sky-line windows, band around 0: 1σ noise")
        ax.set_ylabel(f"flux density ({flux_unit})" if flux_unit else "flux density (cube unit)")
        if redshift:
            top = ax.secondary_xaxis(
                "top", functions=(lambda w: w / (1 + redshift), lambda w: w * (1 + redshift))
            )
            top.set_xlabel("rest-frame wavelength (Å)")
    if label:
        ax.legend(loc="upper right")
    return ax


@book_figure
def plot_radial_gradient(
    radius,
    recovered,
    true=None,
    recovered_err=None,
    fit_recovered=None,
    fit_true=None,
    ax=None,
    ylabel="recovered value",
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
    ax : Axes, optional
    ylabel : str
        The quantity, with its unit.
    radius_unit : str

    Returns
    -------
    ax
    """
    ax = axes_or_new(ax, 3.8)
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
            ax.plot(
                r_line,
                fit(r_line),
                color=colour,
                lw=1.5,
                ls="--" if name == "true" else "-",
                label=f"fit to the {name}",
            )
            text.append(f"{name}: {fit.slope:+.3g} ± {fit.slope_err:.2g} /{radius_unit}")
    ax.set(xlabel=f"deprojected radius ({radius_unit})", ylabel=ylabel)
    if text:
        ax.text(
            0.03,
            0.03,
            "slopes\n" + "\n".join(text),
            transform=ax.transAxes,
            va="bottom",
            bbox=dict(fc="w", ec="none", alpha=0.8),
        )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


@book_figure
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
    ax : Axes, optional
    tolerance_dex : float
        Half-width of the shaded band of agreement.

    Returns
    -------
    ax
    """
    ax = axes_or_new(ax, 4.4)
    ref, age = np.asarray(reference_age_myr, dtype=float), np.asarray(age_myr, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        x, y = np.log10(np.where(ref > 0, ref, np.nan)), np.log10(np.where(age > 0, age, np.nan))
    ok = np.ones(x.size, bool) if usable is None else np.asarray(usable, bool)
    err = None if age_err_dex is None else np.asarray(age_err_dex, dtype=float)
    finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]])
    lo, hi = (finite.min() - 0.3, finite.max() + 0.3) if finite.size else (0.0, 4.0)
    line = np.array([lo, hi])
    ax.fill_between(
        line, line - tolerance_dex, line + tolerance_dex, color="0.9", lw=0, label=f"±{tolerance_dex:g} dex"
    )
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
    ax.set(xlim=(lo, hi), ylim=(lo, hi))
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("log$_{10}$(age / Myr), catalogue SED fit")
    ax.set_ylabel("log$_{10}$(mass-weighted age / Myr), network")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1))
    return ax


@book_figure
def plot_region_histories(age_bins_yr, regions, axs=None):
    """Cumulative SFH and [M/H] per age bin of a few regions, each with its 1-sigma band.

    Parameters
    ----------
    age_bins_yr : ndarray, shape (n_bins + 1,)
    regions : dict of str -> mapping
        Label -> one row of the bins table (``sfh_cum``, ``sfh_cum_sigma``, ``zh``, ``zh_sigma``,
        each shape (n_bins,); ``sfh_cum`` runs from the youngest bin to the oldest like the bins).
    axs : two Axes, optional
        Created one above the other at the book width if omitted.

    Returns
    -------
    axs
    """
    if axs is None:
        _, axs = plt.subplots(2, 1, figsize=(BOOK_WIDTH_IN, 5.8))
    ax1, ax2 = axs
    edges = np.asarray(age_bins_yr, dtype=float)
    c = bin_centres_yr(edges)
    for k, (label, row) in enumerate(regions.items()):
        colour = f"C{k}"
        mean = formed_by_edges(row["sfh_cum"])
        sig = np.concatenate([[0.0], np.asarray(row["sfh_cum_sigma"], dtype=float)[:-1]])
        step_band(ax1, edges[:-1], mean, sig, colour, lw=1.5, label=label)
        zh, zs = np.asarray(row["zh"], dtype=float), np.asarray(row["zh_sigma"], dtype=float)
        ax2.plot(c, zh, "o-", color=colour, ms=3, label=label)
        ax2.fill_between(c, zh - zs, zh + zs, color=colour, alpha=0.2, lw=0)
    lookback_axis(ax1, "mass fraction formed")
    lookback_axis(ax2, "[M/H] of the stars formed (dex)", legend=False)
    ax1.get_legend().remove()
    ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1), title="region ± 1σ")
    return axs


@book_figure
def plot_spectra_predictions(table, ppxf=None, labels=None, axs=None):
    """Histories of single spectra (:func:`sfh_ml.predict_spectra`) with pPXF's beside them.

    Left: the mass fraction formed before each look-back time, the network's with its 1-sigma band,
    pPXF's dashed. Right: mass-weighted log age against mass-weighted [M/H], the network's with their
    1-sigma errors (filled), pPXF's (open), joined for each spectrum.

    Parameters
    ----------
    table : astropy.table.Table
        :func:`sfh_ml.predict_spectra`'s table (``sfh_cum``, ``sfh_cum_sigma``, ``mw_log_age``,
        ``mw_log_age_err``, ``mw_zh``, ``mw_zh_err``; ``meta["age_bins_yr"]``).
    ppxf : astropy.table.Table, optional
        :func:`sfh_ml.observations.ppxf_spectra`'s table for the same spectra (``ppxf_sfh``,
        ``ppxf_mw_log_age``, ``ppxf_mw_zh``).
    labels : sequence of str, optional
        One per row (default the table's ``name``).
    axs : two Axes, optional

    Returns
    -------
    axs
    """
    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 3.6), layout="constrained")
    ax1, ax2 = axs
    edges = np.asarray(table.meta["age_bins_yr"], dtype=float)
    labels = [str(n) for n in table["name"]] if labels is None else list(labels)
    for k, (row, label) in enumerate(zip(table, labels)):
        colour = f"C{k}"
        sig = np.concatenate([[0.0], np.asarray(row["sfh_cum_sigma"], dtype=float)[:-1]])
        step_band(ax1, edges[:-1], formed_by_edges(row["sfh_cum"]), sig, colour, lw=1.5, label=label)
        ax2.errorbar(
            row["mw_log_age"],
            row["mw_zh"],
            xerr=row["mw_log_age_err"],
            yerr=row["mw_zh_err"],
            fmt="o",
            color=colour,
            ms=6,
        )
        if ppxf is not None:
            p = ppxf[k]
            ax1.step(
                edges[:-1], formed_by_edges(np.cumsum(p["ppxf_sfh"])), where="post", color=colour, ls="--"
            )
            ax2.plot(p["ppxf_mw_log_age"], p["ppxf_mw_zh"], "o", mfc="none", mec=colour, ms=8, mew=1.5)
            ax2.plot(
                [row["mw_log_age"], p["ppxf_mw_log_age"]],
                [row["mw_zh"], p["ppxf_mw_zh"]],
                color=colour,
                lw=0.8,
            )
    lookback_axis(ax1, "mass fraction formed", legend=False)
    ax1.set_ylim(-0.02, 1.02)
    ax1.legend(loc="upper left", title="network ± 1σ" + ("; pPXF dashed" if ppxf is not None else ""))
    ax2.set_xlabel("mass-weighted log$_{10}$(age / yr)")
    ax2.set_ylabel("mass-weighted [M/H] (dex)")
    if ppxf is not None:
        ax2.set_title("filled: network, open: pPXF")
    return axs
