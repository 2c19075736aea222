"""Running the chunks of a synthetic set: worker processes, stops by signal, the progress bar.

Chunks are computed here or in fresh worker processes (spawn: no inherited file handles or locks)
that save their chunks themselves and end with their parent (``kill -9`` included). A stop (Ctrl-C,
or SIGTERM, which :func:`sigterm_as_interrupt` turns into the same ``KeyboardInterrupt``) lands
between two chunk writes, never inside one (:func:`signals_held`), so the chunks saved so far are
kept and a run resumes from them. What a chunk is and where it goes are the caller's
(:func:`sfh_ml.synthesis.dataset.generate_chunk`, :class:`sfh_ml.synthesis.store.ChunkStore`).
"""

import contextlib
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from tqdm import tqdm

from .config import DatasetConfig

__all__ = ["compute_chunks", "signals_held", "sigterm_as_interrupt"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# ----------------------------------------------------------------------------------------- signals
@contextlib.contextmanager
def signals_held():
    """Defer SIGINT and SIGTERM to the end of the block: a stop lands between two writes, never in one.

    Raised inside ``np.savez``, the interrupt would turn into zipfile's "open writing handle" error.
    Python runs signal handlers in the main thread, so swapping the handlers works whatever thread
    of the process the signal was delivered to (masking the main thread alone does not).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if pending:
        raise KeyboardInterrupt(f"stopped by signal {pending[0]}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a batch system's "stop") ends the run like Ctrl-C: clean-up runs, chunks are kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------------------- workers
_WORKER = {}


def _die_with_parent(parent_pid):
    """End this worker process when its parent is gone (``kill -9`` included)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker_init(config_json, store, chunk, parent_pid):
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    config = DatasetConfig.from_json(config_json)
    _WORKER.update(config=config, synth=config.synthesizer(), store=store, chunk=chunk)


def _worker_chunk(index):
    rec = _WORKER["chunk"](_WORKER["config"], index, _WORKER["synth"])
    _WORKER["store"].save(index, rec)
    return index, len(rec["sfh"])


class _Pool:
    """Worker processes that save chunks themselves; they are started fresh (spawn: no inherited file
    handles or locks) and end with the parent, or at once when the run stops early."""

    def __init__(self, config, store, chunk, workers):
        ctx = get_context("spawn")
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(config.to_json(), store, chunk, os.getpid()),
        )

    def map(self, todo):
        return self.pool.map(_worker_chunk, todo)

    def close(self, finished):
        if not finished:
            # stop the running chunks now rather than after them (no public API for this before 3.14)
            for proc in list(getattr(self.pool, "_processes", {}).values()):
                proc.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------------------- a run
def compute_chunks(config, store, todo, chunk, workers=1, progress=True, desc=None):
    """Compute the chunks ``todo`` and save each one in ``store`` as soon as it is done.

    Parameters
    ----------
    config : DatasetConfig
    store : ChunkStore
        Where the chunks go (:class:`sfh_ml.synthesis.store.ChunkStore`): ``store.save(index, rec)``;
        a save that fails in this process is re-raised as ``store.disk_error(err)``. Sent to the
        worker processes (pickled).
    todo : list of int
        Chunk indices still to compute.
    chunk : callable
        ``chunk(config, index, synthesizer) -> dict of ndarray`` (the chunk's per-object datasets):
        :func:`sfh_ml.synthesis.dataset.generate_chunk`. A module-level function: the worker
        processes receive it by name.
    workers : int
        Processes computing chunks in parallel (1: all in this process).
    progress : bool
        Show a tqdm progress bar (objects, the chunks done before included).
    desc : str, optional
        Label of the progress bar.

    Returns
    -------
    Synthesizer or None
        The Synthesizer built in this process (None when the workers did the work).
    """
    bar = tqdm(total=config.n, disable=not progress, unit="spec", desc=desc)
    bar.update(config.n - sum(min(config.chunk_size, config.n - i * config.chunk_size) for i in todo))
    synth, pool, finished = None, None, False
    try:
        if workers == 1 or len(todo) <= 1:
            synth = config.synthesizer()
            for index in todo:
                rec = chunk(config, index, synth)
                try:
                    store.save(index, rec)
                except OSError as err:
                    raise store.disk_error(err) from err
                bar.update(len(rec["sfh"]))
        else:
            pool = _Pool(config, store, chunk, min(workers, len(todo)))
            for _, n_done in pool.map(todo):
                bar.update(n_done)
        finished = True
    finally:
        bar.close()
        if pool is not None:
            pool.close(finished)
    return synth
