"""Small array and text helpers shared by the wings (one home each), and the Dask client."""

import contextlib
import os

import numpy as np

__all__ = [
    "pixel_edges",
    "interp_index",
    "interp_weights",
    "as_str",
    "float_list",
    "WAVE_LIMITS_AA",
    "check_wave_aa",
    "check_range",
    "check_positive_int",
    "MISSING_VALUES",
    "HUGE_VALUE",
    "is_missing",
    "dask_client",
    "BOOK_DATA_DIRS",
    "book_data_dir",
]

# Where the chapters keep what they write, relative to book/ (where they run): one folder per mode,
# so that a quick run in JupyterLab never meets the full run's files (nor `make test`'s).
BOOK_DATA_DIRS = {False: "../_build/data", True: "../_build/quick-data"}

# Any wavelength the package handles lies between 100 A (extreme UV) and 1 cm (the Cloudy line list
# reaches 610 micron = 6.1e6 A). Outside that, the numbers are not Angstrom: metres (5e-7), or
# frequencies in Hz (5e14).
WAVE_LIMITS_AA = (100.0, 1e8)
# A spectral grid entirely below this is not an optical or UV spectrum in Angstrom (912 A is the
# Lyman limit): most likely nanometres.
MIN_GRID_MAX_AA = 1000.0
# Missing-value flags of catalogues and pipelines (PHANGS: -9999), and the size from which a value
# is a fill value (IDL / FITS bad-value conventions, 1e30 and beyond), never a flux.
MISSING_VALUES = (-9999.0, -999.0, -99999.0)
HUGE_VALUE = 1e30


def pixel_edges(wave_aa):
    """Edges of the pixels whose centres are ``wave_aa``: midpoints, the ends extrapolated.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Increasing pixel centres (Angstrom, or any unit).

    Returns
    -------
    ndarray, shape (n_wave + 1,)
    """
    w = np.asarray(wave_aa, dtype=float)
    return np.concatenate([[1.5 * w[0] - 0.5 * w[1]], 0.5 * (w[1:] + w[:-1]), [1.5 * w[-1] - 0.5 * w[-2]]])


def interp_index(x, nodes):
    """Lower node and fractional position of ``x`` on increasing ``nodes`` (clamped to the ends).

    Parameters
    ----------
    x : ndarray, any shape
    nodes : ndarray, shape (n_nodes,), n_nodes >= 2

    Returns
    -------
    j : ndarray of int, shape x.shape
        ``nodes[j] <= x < nodes[j + 1]`` (0 or n_nodes - 2 outside).
    w : ndarray, shape x.shape
        Weight of ``nodes[j + 1]`` in [0, 1]: ``value = (1 - w) * values[j] + w * values[j + 1]``.
    """
    x = np.asarray(x, dtype=float)
    nodes = np.asarray(nodes, dtype=float)
    j = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, nodes.size - 2)
    w = np.clip((x - nodes[j]) / (nodes[j + 1] - nodes[j]), 0.0, 1.0)
    return j, w


def interp_weights(x, nodes):
    """Linear-interpolation weights of values ``x`` on increasing ``nodes`` (clamped to the ends).

    Parameters
    ----------
    x : ndarray, any shape
    nodes : ndarray, shape (n_nodes,)

    Returns
    -------
    ndarray, shape x.shape + (n_nodes,)
        Weights, at most two non-zero, summing to one: ``values_at_x = weights @ values_at_nodes``.
    """
    x = np.asarray(x, dtype=float)
    nodes = np.asarray(nodes, dtype=float)
    if nodes.size == 1:
        return np.ones(x.shape + (1,))
    j, w = interp_index(x, nodes)
    k = np.arange(nodes.size)
    return (k == j[..., None]) * (1.0 - w)[..., None] + (k == (j + 1)[..., None]) * w[..., None]


def as_str(values):
    """Text from bytes (HDF5 and FITS give either): one value, or a list for a sequence or array."""
    if isinstance(values, bytes | np.bytes_ | str):
        return values.decode() if isinstance(values, bytes | np.bytes_) else str(values)
    return [as_str(v) for v in values]


def float_list(x):
    """JSON-friendly list of floats from an optional array (None stays None)."""
    return None if x is None else [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


def check_wave_aa(wave_aa, name="wave_aa", limits=WAVE_LIMITS_AA, increasing=False, what=""):
    """Refuse wavelengths that cannot be in Angstrom; the one check every public function uses.

    Parameters
    ----------
    wave_aa : float or ndarray
        Wavelengths that should be in Angstrom.
    name : str
        The parameter's name, for the message.
    limits : (float, float)
        Accepted range, Angstrom (default :data:`WAVE_LIMITS_AA`); a function valid over a narrower
        range (the MUSE line-spread function) passes its own.
    increasing : bool
        Also require a strictly increasing 1-D grid (pixel centres).
    what : str
        What the range stands for, for the message (``"the MUSE range"``).

    Returns
    -------
    ndarray
        ``wave_aa`` as a float array.

    Raises
    ------
    ValueError
        Non-finite values, values outside ``limits``, a grid entirely below 1000 A (nanometres?),
        or, with ``increasing``, a grid that is not strictly increasing.
    """
    w = np.asarray(wave_aa, dtype=float)
    if w.size == 0:  # an empty selection (no line on the grid) is nothing to check
        return w
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or infinite values: expected wavelengths in Angstrom")
    lo, hi = float(w.min()), float(w.max())
    if lo < limits[0] or hi > limits[1]:
        where = f" ({what})" if what else ""
        raise ValueError(
            f"{name} spans {lo:.4g}-{hi:.4g}, outside {limits[0]:.4g}-{limits[1]:.4g} Angstrom{where}: "
            f"{name} must be in Angstrom (not nm, micron or metres)"
        )
    if w.size > 1 and hi < MIN_GRID_MAX_AA:
        raise ValueError(
            f"{name} spans {lo:.4g}-{hi:.4g}, all below {MIN_GRID_MAX_AA:.0f} Angstrom: is it in nm? "
            f"{name} must be in Angstrom (multiply nm by 10)"
        )
    if increasing and (w.ndim != 1 or w.size < 2 or np.any(np.diff(w) <= 0)):
        raise ValueError(
            f"{name} must be a 1-D strictly increasing grid of at least 2 wavelengths (Angstrom)"
        )
    return w


def check_range(value, name, unit="", low=None, high=None, low_open=False):
    """Refuse non-finite values or values outside [low, high] (``(low, high]`` with ``low_open``).

    Parameters
    ----------
    value : float or ndarray
    name, unit : str
        The parameter and its unit, for the message.
    low, high : float, optional
        Bounds (None: unbounded).
    low_open : bool
        Exclude ``low`` itself (for S/N and widths that must be > 0).

    Returns
    -------
    ndarray
        ``value`` as a float array.
    """
    v = np.asarray(value, dtype=float)
    unit_txt = f" {unit}" if unit else ""
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or infinite values (expected{unit_txt or ' a number'})")
    if low is not None and (np.any(v <= low) if low_open else np.any(v < low)):
        sign = ">" if low_open else ">="
        raise ValueError(f"{name} must be {sign} {low:g}{unit_txt}, got min {float(v.min()):.4g}")
    if high is not None and np.any(v > high):
        raise ValueError(f"{name} must be <= {high:g}{unit_txt}, got max {float(v.max()):.4g}")
    return v


def check_positive_int(value, name, high=None):
    """Refuse anything but an integer >= 1 (and <= ``high``); ``name`` says the parameter and its option.

    Parameters
    ----------
    value : int
    name : str
        E.g. ``"batch_size (--batch-size)"``.
    high : int, optional
        Largest accepted value.

    Returns
    -------
    int
    """
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be at most {high:,}, got {value:,}")
    return int(value)


def is_missing(values):
    """Where values are missing: NaN or inf, a flag of :data:`MISSING_VALUES`, or ``|v| >= HUGE_VALUE``.

    The one test of a missing value: the network's inputs (:func:`sfh_ml.network.mask_missing`)
    and the pPXF fits (:func:`sfh_ml.fitting.fit_spectrum`) use it. Masked entries of a
    :class:`numpy.ma.MaskedArray` are missing too.

    Parameters
    ----------
    values : array_like, any shape

    Returns
    -------
    ndarray of bool, shape of ``values``
    """
    mask = np.ma.getmaskarray(values) if np.ma.isMaskedArray(values) else False
    v = np.asarray(np.ma.getdata(values))
    if v.dtype not in (np.float32, np.float64):  # float32 stays float32: no float64 copy of a cube
        v = v.astype(float)
    with np.errstate(invalid="ignore"):
        missing = ~(np.abs(v) < HUGE_VALUE)  # NaN, inf and fill values in one test
        lo, hi = min(MISSING_VALUES), max(MISSING_VALUES)
        candidate = (v >= lo) & (v <= hi)  # the flags are compared only where one could be
        if np.ndim(v) == 0:
            missing = missing | np.isin(v, MISSING_VALUES)
        elif candidate.any():
            missing[candidate] |= np.isin(v[candidate], MISSING_VALUES)
    return mask | missing


@contextlib.contextmanager
def dask_client(client="local", n_workers=None):
    """A ``dask.distributed`` client for the duration of a ``with`` block.

    Parameters
    ----------
    client : "local", str or dask.distributed.Client
        ``"local"``: a :class:`~dask.distributed.LocalCluster` of ``n_workers`` processes with one
        thread each (numerical work that releases the GIL little and uses BLAS runs best one task per
        core), closed on exit. A scheduler address (``"tcp://host:8786"``): a client of that
        cluster, closed on exit (the cluster keeps running). A ``Client``: used as it is, left open.
    n_workers : int, optional
        Processes of the local cluster (default: one per core).

    Yields
    ------
    dask.distributed.Client
    """
    from dask.distributed import Client, LocalCluster

    if not isinstance(client, str):
        yield client
        return
    if client == "local":
        cluster = LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1, dashboard_address=":0"
        )
        own = Client(cluster)
    else:
        cluster, own = None, Client(client)
    try:
        yield own
    finally:
        own.close()
        if cluster is not None:
            cluster.close()


def book_data_dir(data_dir=None, quick=False):
    """The folder a chapter reads and writes its data sets and models in, created if missing.

    Parameters
    ----------
    data_dir : str or Path, optional
        The chapter's ``DATA_DIR`` parameter; None: ``BOOK_DATA_DIRS[quick]``, a folder per mode
        (``make`` passes its own).
    quick : bool
        The chapter's ``QUICK`` parameter.

    Returns
    -------
    Path
    """
    from pathlib import Path

    path = Path(BOOK_DATA_DIRS[bool(quick)] if data_dir is None else data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path
