"""The chunks of an application run: each a pure function of (options, kind, index).

Each chunk (:func:`run_chunk`) sums the member spectra of its bins from the lazy cube (bounded
memory), or takes the clusters' aperture spectra, prepares them
(:func:`~sfh_ml.observations.prepare.prepare_spectra`), adds the photometry, predicts
(:func:`sfh_ml.network.predict`) and writes ``OUT/work/{kind}_XXXXX.npz`` atomically. A chunk whose
file exists is skipped, so a killed run (even ``kill -9``) resumes where it stopped. Chunks run one
after the other in this process (:func:`run_serial`; the network uses every core) or as tasks on a
Dask cluster (:func:`run_dask`); both give identical results, because each chunk is computed by the
same function from the same inputs.
"""

import hashlib
import json
import threading
import warnings
from pathlib import Path

import numpy as np

from ...network.goodness import GOODNESS_KEYS
from ...network.trust import TRUST_KEYS
from ..binning import SpatialBins, continuum_snr
from ..prepare import SIGMA_TOLERANCE_KMS, prepare_spectra
from ..readers import read_muse_cube
from .outputs import save_npz

__all__ = [
    "PREDICT_BATCH",
    "READ_VOXELS",
    "APERTURE_RADIUS_FWHM",
    "ANNULUS_FWHM",
    "chunk_path",
    "register_model",
    "forget_state",
    "run_chunk",
    "run_serial",
    "run_dask",
    "load_chunks",
]

PREDICT_BATCH = 512  # spectra prepared at a time (prepare_spectra holds ~10 arrays of this x n_wave)
READ_VOXELS = 2**23  # cube values read at a time when summing a chunk's spectra (64 MB as float64)
APERTURE_RADIUS_FWHM = 1.0  # cluster aperture radius, in units of the MUSE PSF FWHM (94 % of a point source)
ANNULUS_FWHM = (1.5, 2.5)  # background annulus radii, same units

_PREDICT_LOCK = threading.Lock()  # one Keras predict at a time per process (threaded Dask workers)
_MODEL_LOCK = threading.Lock()
_STATE = {}  # per thread: the opened cube and bins of a work folder
_MODELS = {}  # per process: models by fingerprint (given to apply_cube, or loaded from their file)


def chunk_path(work, kind, index):
    """The file of chunk ``index`` of ``kind`` (``"bins"`` or ``"clusters"``) in the work folder."""
    return Path(work) / f"{kind}_{index:05d}.npz"


def register_model(fingerprint, model):
    """Make a network in memory known to the chunks of this process, by its fingerprint."""
    with _MODEL_LOCK:
        _MODELS[fingerprint] = model


def forget_state():
    """Drop the opened cubes and bins of every work folder (after a run's work folder is removed)."""
    _STATE.clear()


class _State:
    """What the chunks of one work folder share within a process: the lazy cube, bins and model."""

    def __init__(self, options):
        import dask.array as da

        from ...network import get_metadata

        self.options = options
        work = Path(options["work"])
        with np.load(work / "setup.npz", allow_pickle=False) as f:
            self.setup = {k: f[k] for k in f.files}
        self.cube = read_muse_cube(options["cube"][0])
        if self.cube.dq is not None:
            self.flux = da.where(self.cube.dq == 0, self.cube.flux, np.nan)
        else:
            self.flux = self.cube.flux
        self.var = self.cube.var
        self.bins = SpatialBins(self.setup["bin_id"])
        self.model = _model_for(options)
        self.meta = get_metadata(self.model)

    def prepare_and_predict(self, flux, var, v_kms, sigma_kms, photometry, photometry_err=None):
        """Prepared spectra and predictions of summed spectra (m, n_wave): a dict of arrays."""
        from ...network import PREDICTION_KEYS, predict

        opt, setup = self.options, self.setup
        wave_model = self.meta["wave_aa"]
        parts = []
        for start in range(0, len(flux), PREDICT_BATCH):
            sl = slice(start, start + PREDICT_BATCH)
            prep = prepare_spectra(
                self.cube.wave_aa,
                flux[sl],
                var[sl],
                wave_model,
                sigma_model_kms=opt["sigma_model_kms"],
                # the network was trained up to sigma_max_kms: broader spectra are used as they are
                tolerance_kms=max(opt["sigma_max_kms"] - opt["sigma_model_kms"], SIGMA_TOLERANCE_KMS),
                z_sys=opt["redshift"],
                v_kms=v_kms[sl] if v_kms is not None else None,
                ebv_mw=opt["ebv_mw"],
                sigma_obs_kms=sigma_kms[sl] if sigma_kms is not None else None,
            )
            goodness, trust = opt.get("goodness", False), opt.get("trust", False)
            with _PREDICT_LOCK:
                pred = predict(
                    self.model,
                    prep.flux,
                    photometry[sl],
                    batch_size=opt["batch_size"],
                    wave_aa=wave_model,
                    goodness=goodness,
                    trust=trust,
                    noise=np.sqrt(prep.var) if goodness else None,
                    photometry_err=None if photometry_err is None else photometry_err[sl],
                )
            keys = PREDICTION_KEYS + (GOODNESS_KEYS if goodness else ())
            keys += tuple(k for k in TRUST_KEYS if k in pred)
            part = {k: np.asarray(pred[k], dtype=np.float64) for k in keys}
            part["network_quality"] = np.asarray(pred["quality"], dtype=np.int64)
            part["flags"] = prep.flags.astype(np.int64)
            part["coverage"] = prep.coverage
            parts.append(part)
        del setup
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _model_for(options):
    """The run's model in this process: the object given to apply_cube, else loaded once from its file."""
    from ...network import load_model

    with _MODEL_LOCK:
        if options["model"] not in _MODELS:
            if not options.get("model_file"):
                raise RuntimeError(
                    "the model was given as an object and is not in this process: save it and pass its path"
                )
            _MODELS[options["model"]] = load_model(options["model_file"])
        return _MODELS[options["model"]]


def _state(options):
    """The state of a work folder for this thread (each thread its own memory maps)."""
    setup_file = Path(options["work"]) / "setup.npz"
    key = (json.dumps(options, sort_keys=True), setup_file.stat().st_mtime_ns)
    thread = threading.get_ident()
    if _STATE.get(thread, (None,))[0] != key:
        _STATE[thread] = (key, _State(options))
    return _STATE[thread][1]


def _bins_chunk(state, index):
    """Sum, prepare and predict the bins of one chunk."""
    import dask

    setup = state.setup
    starts = setup["chunk_starts"]
    ids = setup["order"][starts[index] : starts[index + 1]]
    members = [state.bins.members[i] for i in ids]
    flat = np.concatenate(members)
    labels = np.repeat(np.arange(ids.size), [m.size for m in members])
    y, x = np.divmod(flat, state.bins.shape[1])
    y0, y1, x0, x1 = y.min(), y.max() + 1, x.min(), x.max() + 1
    local = np.full((y1 - y0, x1 - x0), -1, dtype=np.int64)
    local[y - y0, x - x0] = labels
    with dask.config.set(scheduler="synchronous"):  # read in this task, whatever runs it
        flux, var = SpatialBins(local).sum_spectra(
            state.flux[:, y0:y1, x0:x1], state.var[:, y0:y1, x0:x1], max_voxels=READ_VOXELS
        )
    out = state.prepare_and_predict(
        flux,
        var,
        setup["v_kms"][ids] if setup["has_v"] else None,
        setup["sigma_kms"][ids] if setup["has_sigma"] else None,
        setup["photometry"][ids],
    )
    out["index"] = ids
    return out


def _clusters_chunk(state, index):
    """Aperture spectra (background subtracted), prepare and predict the clusters of one chunk."""
    import dask

    from ..apertures import aperture_spectra

    setup, opt = state.setup, state.options
    starts = setup["cl_chunk_starts"]
    sl = slice(int(starts[index]), int(starts[index + 1]))
    fwhm = float(setup["psf_fwhm_arcsec"])
    with dask.config.set(scheduler="synchronous"):
        ap = aperture_spectra(
            state.flux,
            state.var,
            state.cube.wcs,
            setup["cl_ra"][sl],
            setup["cl_dec"][sl],
            APERTURE_RADIUS_FWHM * fwhm,
            annulus_arcsec=tuple(f * fwhm for f in ANNULUS_FWHM),
            psf_fwhm_arcsec=fwhm,
            on_bad="flag",
        )
    out = state.prepare_and_predict(
        ap.flux,
        ap.var,
        setup["cl_v_kms"][sl] if setup["has_v"] else None,
        setup["cl_sigma_kms"][sl] if setup["has_sigma"] else None,
        setup["cl_photometry"][sl],
        setup["cl_photometry_err"][sl],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        signal, noise = continuum_snr(ap.flux.T, ap.var.T, state.cube.wave_aa, redshift=opt["redshift"])
        out["snr"] = signal / noise
    out["index"] = np.arange(sl.start, sl.stop)
    out["area_spaxels"] = ap.area_spaxels
    out["psf_fraction"] = ap.psf_fraction
    out["reason"] = np.array(ap.reason, dtype=str)
    return out


def run_chunk(options, kind, index):
    """Compute one chunk and write ``OUT/work/{kind}_{index:05d}.npz`` atomically (skipped if present).

    A pure function of its arguments (and of the files they name), so a Dask worker and this process
    compute the same chunk identically; the cube, bins and model are opened once per process.

    Parameters
    ----------
    options : dict
        The run's options (the content of ``OUT/work/options.json``).
    kind : {"bins", "clusters"}
    index : int
        Chunk number.

    Returns
    -------
    str
        The chunk file.
    """
    path = chunk_path(options["work"], kind, index)
    if path.exists():
        return str(path)
    state = _state(options)
    try:
        arrays = _bins_chunk(state, index) if kind == "bins" else _clusters_chunk(state, index)
    finally:
        state.cube.close()  # unmap the file: its pages do not pile up in memory (reopened on next use)
    save_npz(path, arrays)
    return str(path)


def run_serial(options, todo, progress, n_total):
    """Run the chunks ``todo`` ((kind, index) pairs) one after the other in this process."""
    from tqdm import tqdm

    with tqdm(
        total=n_total, initial=n_total - len(todo), desc="apply", unit="chunk", disable=not progress
    ) as bar:
        for kind, index in todo:
            run_chunk(options, kind, index)
            bar.update()


def run_dask(options, todo, progress, n_total, client):
    """Run the chunks ``todo`` as tasks on a Dask cluster (``client``: see ``ApplyConfig.client``).

    A chunk's error is raised here; the chunks already written stay (a re-run resumes from them).
    """
    from dask.distributed import as_completed
    from tqdm import tqdm

    from ...utils import dask_client

    with dask_client(client) as client:
        token = (
            options["model"][:8]
            + hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
        )
        futures = [
            client.submit(
                run_chunk, options, kind, index, key=f"sfh-ml-apply-{token}-{kind}-{index}", pure=False
            )
            for kind, index in todo
        ]
        try:
            with tqdm(
                total=n_total, initial=n_total - len(todo), desc="apply", unit="chunk", disable=not progress
            ) as bar:
                for future in as_completed(futures):
                    future.result()  # re-raises a chunk's error here
                    bar.update()
        except BaseException:
            client.cancel(futures)  # the chunks already written stay: a re-run resumes from them
            raise


# ----------------------------------------------------------------------------------------- results
def load_chunks(work, kind, n_chunks, n):
    """The arrays of every chunk of ``kind``, each object at its index: a dict of shape (n, ...).

    Strings fill with "", integers with 0, floats with NaN where no chunk gave a value.
    """
    out = None
    for index in range(n_chunks):
        with np.load(chunk_path(work, kind, index), allow_pickle=False) as f:
            part = {k: f[k] for k in f.files}
        if out is None:
            out = {}
            for k, v in part.items():
                if k == "index":
                    continue
                fill = "" if v.dtype.kind == "U" else (0 if v.dtype.kind in "iu" else np.nan)
                dtype = object if v.dtype.kind == "U" else v.dtype
                out[k] = np.full((n, *v.shape[1:]), fill, dtype=dtype)
        for k, v in part.items():
            if k != "index":
                out[k][part["index"]] = v
    return out
