"""Helpers shared by the figure modules: the book-style decorator, new figures at the book width,
panel grids of at most two columns, the look-back-time axis and the axis labels used everywhere."""

import functools

import matplotlib.pyplot as plt
import numpy as np

from .style import BOOK_WIDTH_IN, book_style

# One wording per axis, in every figure (units in parentheses).
LOOKBACK_LABEL = "look-back time (yr)"
AGE_LABEL = "age of the stars (yr)"
WAVE_LABEL = "wavelength (Å)"
LUM_LABEL = "L$_\\odot$ Å$^{-1}$ M$_\\odot^{-1}$"
FLUX_LABEL = f"flux ({LUM_LABEL} formed)"
SNR_LABEL = "S/N per pixel"
ROW_HEIGHT_IN = 2.9  # one row of two panels
MAX_COLUMNS = 2  # panels per row at the book width


def book_figure(func):
    """Draw ``func``'s figure in the book style.

    A context (not a style applied on import) so that importing :mod:`sfh_ml.plotting` changes
    nothing in the session, and so that every figure gets the book style even where a notebook
    backend resets the global settings when it starts.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with book_style():
            return func(*args, **kwargs)

    return wrapper


def new_figure(height_in):
    """A figure at the book width, ``height_in`` inches high."""
    return plt.figure(figsize=(BOOK_WIDTH_IN, height_in))


def axes_or_new(ax, height_in=4.2, **subplot_kw):
    """``ax`` itself, or the Axes of a new one-panel figure at the book width."""
    if ax is not None:
        return ax
    return new_figure(height_in).add_subplot(**subplot_kw)


def panel_grid(n, row_height_in=ROW_HEIGHT_IN, spare=False, **subplots_kw):
    """``n`` panels in rows of at most two at the book width.

    Parameters
    ----------
    n : int
    row_height_in : float
        Height of one row, inches.
    spare : bool
        Keep one more (axis-less) panel when there is room in the last row, for a legend.

    Returns
    -------
    fig, list of n Axes, Axes or None
        The figure, the panels, and the spare panel (None when there is none or ``spare`` is False).
    """
    ncols = 1 if n == 1 else MAX_COLUMNS
    nrows = int(np.ceil(n / ncols))
    fig, axs = plt.subplots(
        nrows, ncols, figsize=(BOOK_WIDTH_IN, row_height_in * nrows), squeeze=False, **subplots_kw
    )
    axs = list(axs.ravel())
    extra = axs[n:]
    keep = extra[0] if (spare and extra) else None
    for ax in extra:
        if ax is keep:
            ax.axis("off")
        else:
            ax.remove()
    return fig, axs[:n], keep


def legend_panel(spare, source):
    """The legend of ``source`` drawn alone in the axis-less panel ``spare``."""
    handles, labels = source.get_legend_handles_labels()
    spare.legend(handles, labels, loc="center", frameon=False)
    return spare


def legend_below(fig, source, ncol=3, owns_figure=True, **kw):
    """The legend of ``source`` under the figure's panels, or in ``source`` when drawn on given Axes."""
    if not owns_figure:
        return source.legend(**kw)
    handles, labels = source.get_legend_handles_labels()
    return fig.legend(handles, labels, loc="outside lower center", ncol=ncol, **kw)


def lookback_axis(ax, ylabel, legend=True):
    """Logarithmic look-back time increasing to the right (old to the right), like every age axis."""
    ax.set_xscale("log")
    ax.set_xlabel(LOOKBACK_LABEL)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend()
    return ax


def snr_axis(ax, snrs):
    """Logarithmic S/N axis with a plain tick at each S/N drawn (and no minor tick labels)."""
    from matplotlib.ticker import NullFormatter

    snrs = np.unique(np.asarray(snrs, dtype=float))
    ax.set_xscale("log")
    ax.set_xticks(snrs, labels=[f"{s:g}" for s in snrs])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(SNR_LABEL)
    return ax


def formed_by_edges(sfh_cum):
    """Fraction of the mass formed before each bin's young edge.

    Parameters
    ----------
    sfh_cum : ndarray, shape (n_bins,)
        Cumulative mass fraction from the youngest bin to the oldest (1 at the oldest).

    Returns
    -------
    ndarray, shape (n_bins,)
        1 minus the mass formed in the younger bins: at look-back time ``age_bins_yr[k]``.
    """
    return 1.0 - np.concatenate([[0.0], np.asarray(sfh_cum, dtype=float)[:-1]])


def step_band(ax, x, mean, sigma, colour, **kw):
    """A post-step line with its 1-sigma band clipped to [0, 1] (cumulative mass fractions)."""
    ax.step(x, mean, where="post", color=colour, **kw)
    ax.fill_between(
        x,
        np.clip(mean - sigma, 0, 1),
        np.clip(mean + sigma, 0, 1),
        step="post",
        color=colour,
        alpha=0.25,
        lw=0,
    )
