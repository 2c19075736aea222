"""Small array and text helpers shared by the wings (one home each)."""

import numpy as np

__all__ = ["pixel_edges", "interp_weights", "as_str", "float_list"]


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
    j = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, nodes.size - 2)
    w = np.clip((x - nodes[j]) / (nodes[j + 1] - nodes[j]), 0.0, 1.0)
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
