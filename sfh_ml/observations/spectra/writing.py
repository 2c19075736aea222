"""Writing :func:`~.prediction.predict_spectra`'s table atomically, as ECSV or FITS."""

import os
from pathlib import Path

import numpy as np

from ...files import check_output, tmp_path
from ..apply.outputs import write_ecsv
from ..flags import NETWORK_FLAG_SHIFT, quality_bits
from .parts import FITS_SUFFIXES

__all__ = ["table_kind", "write_spectra_table"]


def table_kind(path):
    name = str(path).lower()
    if name.endswith(".ecsv"):
        return "ecsv"
    if name.endswith(FITS_SUFFIXES):
        return "fits"
    raise ValueError(f"{path}: the output table must end in .ecsv or .fits")


def write_spectra_table(table, path, overwrite=False, inputs=()):
    """Write :func:`predict_spectra`'s table atomically as ECSV (all metadata) or FITS (keywords).

    Parameters
    ----------
    table : astropy.table.Table
    path : str or Path
        ``*.ecsv`` or ``*.fits``.
    overwrite : bool
        Replace an existing file (never an input).
    inputs : sequence of str or Path
        The run's input files, which ``path`` may not be.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        Another suffix, or ``path`` is an input.
    """
    path = Path(path)
    kind = table_kind(path)
    check_output(path, overwrite=overwrite, inputs=inputs)
    tmp = tmp_path(path)
    tmp.unlink(missing_ok=True)  # left by a run killed while writing: never ours to keep
    try:
        if kind == "ecsv":
            write_ecsv(table, tmp)
        else:
            flat = table.copy(copy_data=False)
            options = table.meta.get("options", {})
            cards = {
                "SFHMODEL": str(options.get("model", ""))[:16],
                "NSPEC": len(table),
                "MEDIUM": str(options.get("medium", "")),
                "SIGMODEL": options.get("sigma_model_kms", np.nan),
                "SIGMAX": options.get("sigma_max_kms", np.nan),
                "YOUNGAGE": table.meta.get("young_edge_yr", np.nan),
                "OLDAGE": table.meta.get("old_edge_yr", np.nan),
                "QSHIFT": NETWORK_FLAG_SHIFT,
            }
            for name, bit in quality_bits().items():
                cards[f"Q{int(np.log2(bit)):d}"[:8]] = name[:60]
            flat.meta = cards
            flat.write(tmp, format="fits")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
