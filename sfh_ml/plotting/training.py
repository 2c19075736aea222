"""Figures of chapter 2 (training the networks): the architecture diagram, the training history and
the validation curves of several runs."""

import textwrap

import matplotlib.pyplot as plt
import numpy as np

from ._axes import axes_or_new, book_figure, new_figure
from .style import BOOK_WIDTH_IN

__all__ = [
    "SPECTRAL_PREFIXES",
    "plot_architecture",
    "plot_history",
    "plot_training_history",
    "plot_validation_curves",
]

SPECTRAL_PREFIXES = ("stem", "conv", "tokens", "position", "attn", "spec_")


def _history_columns(history):
    """A dict of per-epoch lists from a list of per-epoch dicts (``TrainingResult.history``) or a dict."""
    if isinstance(history, list | tuple):
        keys = {k for row in history for k in row}
        return {k: [row.get(k, np.nan) for row in history] for k in keys}
    return dict(history)


def _epochs(columns):
    n = max((len(v) for v in columns.values()), default=0)
    return np.arange(1, n + 1)


@book_figure
def plot_history(history, ax=None, keys=("loss", "val_loss")):
    """Learning curves of a few logged quantities against epoch.

    Parameters
    ----------
    history : list of dict or dict of list
        ``TrainingResult.history`` (per-epoch dicts) or a Keras ``History.history``.
    ax : Axes, optional
    keys : sequence of str
        The quantities drawn (those missing are skipped).

    Returns
    -------
    Axes
    """
    ax = axes_or_new(ax, 3.6)
    columns = _history_columns(history)
    for key in keys:
        if key in columns:
            ax.plot(np.arange(1, len(columns[key]) + 1), columns[key], label=key)
    ax.set(xlabel="epoch", ylabel="loss (Gaussian NLL)")
    ax.legend()
    return ax


@book_figure
def plot_training_history(history, axs=None):
    """The training of one network: total loss, and the point errors of the cumulative SFH and [M/H].

    Parameters
    ----------
    history : list of dict or dict of list
        ``TrainingResult.history``: per epoch ``loss``, ``val_loss``, ``sfh_cum_mae``,
        ``val_sfh_cum_mae``, ``zh_mae``, ``val_zh_mae`` (those missing are skipped).
    axs : pair of Axes, optional
        Created side by side at the book width if omitted.

    Returns
    -------
    pair of Axes
        Loss and point errors against epoch (training solid, validation dashed); the epoch of the
        lowest validation loss is marked.
    """
    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 3.3))
    ax_loss, ax_err = axs
    columns = _history_columns(history)
    epochs = _epochs(columns)
    for key, label, ls in (("loss", "training", "-"), ("val_loss", "validation", "--")):
        if key in columns:
            ax_loss.plot(epochs[: len(columns[key])], columns[key], ls, color="C0", label=label)
    for k, (key, label) in enumerate((("sfh_cum_mae", "cumulative SFH"), ("zh_mae", "[M/H] (dex)"))):
        for prefix, ls, which in (("", "-", "training"), ("val_", "--", "validation")):
            if prefix + key in columns:
                y = columns[prefix + key]
                ax_err.plot(epochs[: len(y)], y, ls, color=f"C{k + 1}", label=f"{label}, {which}")
    if "val_loss" in columns and np.any(np.isfinite(columns["val_loss"])):
        best = epochs[int(np.nanargmin(columns["val_loss"]))]
        for ax in axs:
            ax.axvline(best, color="0.6", ls=":", lw=1)
    ax_loss.set(xlabel="epoch", ylabel="loss (Gaussian NLL)", title="total loss")
    ax_err.set(xlabel="epoch", ylabel="mean absolute error", yscale="log", title="point errors")
    ax_loss.legend()
    ax_err.legend(loc="upper right")
    return axs


@book_figure
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
    ax = axes_or_new(ax, 3.6)
    for name, history in histories.items():
        values = [row.get(key, np.nan) for row in history]
        if np.any(np.isfinite(values)):
            ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set(xlabel="epoch", ylabel=ylabel or key, yscale="log")
    ax.legend()
    return ax


# -------------------------------------------------------------------------------- the diagram
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
            key, label = name.split("_")[0], f"self-attention block {name.split('_')[0][4:]}"
        elif "decoder" in name:
            head = name.split("decoder")[0].rstrip("_")
            key = head + "_decoder"
            label = {"sfh": "SFH decoder", "zh": "[M/H] decoder"}.get(head, "joint decoder (SFH + [M/H])")
        elif name.startswith("phot_dense"):
            key, label = "phot_dense", "Dense encoder"
        else:
            key, label = name, f"{name}: {layer.__class__.__name__}"
        branch = _branch(name)
        lst = blocks.setdefault(branch, [])
        if not lst or lst[-1][0] != key:
            lst.append([key, label, 0])
        lst[-1][2] += layer.count_params()
    return blocks


# Lanes of the diagram (x in axes fraction): the spectral branch is the long one and gets the width.
_LANES = {"spectrum": 0.33, "photometry": 0.82, "shared": 0.5, "joint": 0.5, "sfh": 0.3, "zh": 0.7}
_COLOURS = {
    "spectrum": "#cfe2f3",
    "photometry": "#fce5cd",
    "shared": "#d9ead3",
    "joint": "#ead1dc",
    "sfh": "#f4cccc",
    "zh": "#d9d2e9",
}
_ROW_IN = 0.42  # height of one row of boxes, inches


def _layout(blocks):
    """Position (lane x, row) of every block, the rows counted from the top."""
    pos = {}
    for branch in ("spectrum", "photometry"):
        for row, (key, _, _) in enumerate(blocks.get(branch, [])):
            pos[key] = (_LANES[branch], row)
    row = max(len(blocks.get("spectrum", [])), len(blocks.get("photometry", [])))
    shared = [b for b in blocks.get("shared", []) if b[0] not in ("history", "sfh", "zh")]
    for key, _, _ in shared:
        pos[key] = (_LANES["shared"], row)
        row += 1
    decoders = [b for b in blocks if b in ("sfh", "zh", "joint")]
    for branch in decoders:
        for j, (key, _, _) in enumerate(blocks[branch]):
            pos[key] = (_LANES[branch], row + j)
    row += max((len(blocks[b]) for b in decoders), default=0)
    pos["history"] = (_LANES["shared"], row)
    pos["sfh"], pos["zh"] = (_LANES["sfh"], row + 1), (_LANES["zh"], row + 1)
    return pos, shared, decoders, row + 2


@book_figure
def plot_architecture(model, ax=None):
    """A block diagram of a network: its spectral and photometric branches, latent space and decoder(s).

    Layers are grouped by branch from their names (``stem``, ``conv*``, ``attn*``, ``phot_*``,
    ``*decoder*``...), with the number of parameters of each block. The branches run top to
    bottom in lanes, so that the figure keeps the book width whatever the depth; each box is the
    frame of its text, so the text always fits.

    Parameters
    ----------
    model : keras.Model
        From :func:`sfh_ml.network.build_model` or :func:`sfh_ml.network.load_model`.
    ax : Axes, optional
        Made at the book width, as high as the network is deep, if omitted.

    Returns
    -------
    Axes
    """
    blocks = _blocks(model)
    pos, shared, decoders, n_rows = _layout(blocks)
    if ax is None:
        ax = new_figure(_ROW_IN * n_rows + 0.5).add_subplot()
    ax.set(xlim=(0, 1), ylim=(n_rows - 0.5, -0.5))
    boxes = {}
    width_chars = {"spectrum": 44, "photometry": 24}  # wrap at the lane's width
    for branch, key, label, n in [(b, k, lab, n) for b in blocks for k, lab, n in blocks[b]]:
        if key not in pos:
            continue
        text = label + (f" · {n:,} par." if n else "")
        text = textwrap.fill(text, width_chars.get(branch, 40))
        boxes[key] = ax.text(
            *pos[key],
            text,
            ha="center",
            va="center",
            fontsize=9,
            zorder=3,
            bbox=dict(boxstyle="round,pad=0.3", fc=_COLOURS.get(branch, "#eeeeee"), ec="0.3", lw=0.8),
        )

    def arrow(a, b, **kw):
        style = dict(arrowstyle="->", lw=0.8, shrinkA=0, shrinkB=0, color="0.2")
        style.update(patchA=boxes[a].get_bbox_patch(), patchB=boxes[b].get_bbox_patch(), **kw)
        ax.annotate("", xy=pos[b], xytext=pos[a], arrowprops=style, zorder=2)

    for branch in ("spectrum", "photometry", *decoders):
        keys = [k for k, _, _ in blocks.get(branch, [])]
        for a, b in zip(keys[:-1], keys[1:]):
            arrow(a, b)
    if shared:
        for branch in ("spectrum", "photometry"):
            arrow(blocks[branch][-1][0], shared[0][0])
        for a, b in zip([k for k, _, _ in shared][:-1], [k for k, _, _ in shared][1:]):
            arrow(a, b)
        for branch in decoders:
            arrow(shared[-1][0], blocks[branch][0][0])
            arrow(blocks[branch][-1][0], "history")
    arrow("history", "sfh")
    arrow("history", "zh")
    if "normalisation" in boxes and "photometry" in boxes:  # the photometry feeds the normalisation too
        arrow("photometry", "normalisation", ls=":", color="0.5", connectionstyle="arc3,rad=0.15")
    ax.axis("off")
    ax.set_title(f"{model.name}: {model.count_params():,} parameters")
    return ax
