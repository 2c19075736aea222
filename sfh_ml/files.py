"""Writing output files safely: atomically, and never over an existing file unless asked.

Every writer of the package goes through these helpers: the file appears under its final name only
when complete (written as ``NAME.tmp...`` in the same folder, then renamed), so a crash or
``kill -9`` never leaves a half-written file under the real name.
"""

import contextlib
import os
import socket
import time
from pathlib import Path

__all__ = ["atomic_write_text", "check_output", "tmp_path", "lock_path", "output_lock", "OutputLockedError"]


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
    IsADirectoryError
        ``path`` is a folder (even with ``overwrite``).
    OSError
        The folder does not exist or is not writable.
    """
    path = Path(path)
    for src in inputs:
        if src is not None and Path(src).exists() and path.exists() and os.path.samefile(src, path):
            raise ValueError(f"the output {path} is also an input of this run: choose another output name")
    if path.is_dir():  # --overwrite replaces files, never a folder (found now, not after the work)
        raise IsADirectoryError(
            f"the output {path} is a folder: --out must name a file, not a folder (--overwrite never "
            "replaces a folder); give a file name, e.g. one inside it"
        )
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


class OutputLockedError(FileExistsError):
    """Another live process is writing the same output."""


def lock_path(path):
    """The lock file of output ``path``: ``PATH.lock`` in the same folder."""
    path = Path(path)
    return path.with_name(f"{path.name}.lock")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _age_s(path):
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _read_lock(lock):
    """(host, pid) recorded in a lock file; (None, None) if it is empty or garbled."""
    try:
        host, pid = lock.read_text().split()[:2]
        return host, int(pid)
    except (OSError, ValueError):
        return None, None


@contextlib.contextmanager
def output_lock(path, command="sfh-ml"):
    """Hold ``PATH.lock`` (host and pid inside) while a process writes ``path``.

    The lock does not rely on HDF5 or on ``flock``, so it also works where HDF5 file locking is
    disabled (``HDF5_USE_FILE_LOCKING=FALSE``, common on cluster file systems). A lock left by a dead
    process of the same host is taken over; the lock is removed on exit, also after an exception.

    Parameters
    ----------
    path : str or Path
        The output file.
    command : str
        The command named in the refusal message.

    Raises
    ------
    OutputLockedError
        A live process (or one on another host, which cannot be checked) holds the lock.
    """
    lock = lock_path(path)
    me = f"{socket.gethostname()} {os.getpid()}\n"
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            host, pid = _read_lock(lock)
            if pid is None and _age_s(lock) < 5.0:  # just created by another process, pid not yet written
                host, pid = socket.gethostname(), -1
            if pid == -1 or pid is not None and (host != socket.gethostname() or _pid_alive(pid)):
                where = f"pid {pid}" + ("" if host == socket.gethostname() else f" on {host}")
                raise OutputLockedError(
                    f"{path} is being written by another {command} ({where}, lock file {lock}): wait for it "
                    f"to finish, or stop it; delete {lock} only if that process is gone"
                ) from None
            with contextlib.suppress(FileNotFoundError):  # stale: its process is dead
                lock.unlink()
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        break
    else:
        raise OutputLockedError(f"could not take the lock {lock} for {path}: another process keeps taking it")
    try:
        yield lock
    finally:
        if lock.exists() and _read_lock(lock)[1] == os.getpid():
            lock.unlink()
