"""Writing output files safely: atomically, and never over an existing file unless asked.

Every writer of the package goes through these helpers: the file appears under its final name only
when complete (written as ``NAME.tmp...`` in the same folder, then renamed), so a crash or
``kill -9`` never leaves a half-written file under the real name.
"""

import os
from pathlib import Path

__all__ = ["atomic_write_text", "check_output", "tmp_path"]


def tmp_path(path, suffix=""):
    """The temporary name ``path`` is written under before the rename (same folder, same device)."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp{suffix}")


def check_output(path, overwrite=False, inputs=()):
    """Refuse an output path before any work is done.

    Parameters
    ----------
    path : str or Path
        The output file.
    overwrite : bool
        Allow replacing an existing file.
    inputs : sequence of str or Path
        Input files of the same run: the output may never be one of them.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        ``path`` is one of ``inputs``.
    OSError
        The folder does not exist or is not writable.
    """
    path = Path(path)
    for src in inputs:
        if src is not None and Path(src).exists() and path.exists() and os.path.samefile(src, path):
            raise ValueError(f"the output {path} is also an input of this run: choose another output name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: pass --overwrite (overwrite=True) to replace it")
    folder = path.parent
    if not folder.is_dir():
        raise OSError(f"the output folder {folder} does not exist: create it first")
    if not os.access(folder, os.W_OK):
        raise OSError(f"the output folder {folder} is not writable")


def atomic_write_text(path, text):
    """Write text to ``path`` atomically."""
    tmp = tmp_path(path)
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
