"""The options of an application run (:class:`ApplyConfig`), and their stored form for resuming it.

:func:`~sfh_ml.observations.apply.apply_cube` takes its options as one :class:`ApplyConfig` or as
keywords (which build one). The options that decide the outputs are stored in
``OUT/work/options.json`` (:func:`run_options`); a later run on the same folder resumes only with the
same ones (:func:`check_run_options`).
"""

import json
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

from ...constants import TRAINING_SIGMA_KMS
from ...utils import check_range
from ..binning import parse_bins
from ..redshift import MIN_REDSHIFT

__all__ = [
    "SIGMA_MODEL_KMS",
    "SIGMA_MODEL_MAX_KMS",
    "DEFAULT_BINS",
    "DEFAULT_CHUNK_BINS",
    "DEFAULT_BATCH_SIZE",
    "MIN_SNR",
    "OPTIONS_VERSION",
    "NOT_COMPARED",
    "ApplyConfig",
    "run_options",
    "check_run_options",
]

# Stellar dispersions of the training spectra (km/s): narrower spectra are broadened to the lower end,
# broader ones than the upper end are flagged TOO_BROAD.
SIGMA_MODEL_KMS, SIGMA_MODEL_MAX_KMS = TRAINING_SIGMA_KMS
DEFAULT_BINS = "voronoi:50"
DEFAULT_CHUNK_BINS = 1024  # bins per chunk: 1024 x 3681 channels x 8 bytes = 30 MB per summed array
DEFAULT_BATCH_SIZE = 1024  # Keras batch size
MIN_SNR = 3.0  # below this continuum S/N per pixel an object is flagged LOW_SNR (still predicted)
OPTIONS_VERSION = 1
NOT_COMPARED = ("model_file", "work")  # options that may differ between a run and its resumption


@dataclass(frozen=True, kw_only=True)
class ApplyConfig:
    """Every option of :func:`~sfh_ml.observations.apply.apply_cube`, checked when made.

    The network, the cube and the output folder are the arguments of ``apply_cube``; everything
    else is here. Equal configs on the same files and model give identical outputs.

    Parameters
    ----------
    maps_path : str or Path, optional
        DAP ``MAPS`` file on the cube's grid: ``V_STARS`` (rest frame per bin) and ``SIGMA_STARS``
        (broadening to the model's dispersion), flux-weighted over each bin.
    redshift : float
        Systemic redshift (required; ``V_STARS`` is relative to it), >= :data:`MIN_REDSHIFT`. It is
        checked against the cube's mean spectrum (see ``check_redshift``).
    ebv_mw : float
        Milky Way foreground E(B-V), mag (>= 0), removed from the spectra and the HST images (not from
        the catalogue's fluxes, which are corrected in the release).
    catalogue_path : str or Path, optional
        PHANGS-HST cluster catalogue: a spectrum in an aperture of radius one PSF FWHM around each
        cluster, minus a local background annulus (1.5-2.5 FWHM), corrected to the total flux of a
        point source, paired with the catalogue's five fluxes.
    hst_paths : sequence of str or Path, optional
        The five HST images (see :func:`sfh_ml.observations.hst.hst_spaxel_fluxes`). Without them,
        bins get no photometry (NaN: the network masks the bands) and the outputs say so.
    bins : str
        ``"voronoi:S/N"``, ``"grid:N"`` or ``"none"`` (:func:`~sfh_ml.observations.binning.parse_bins`).
    sigma_obs_kms : float, optional
        Stellar dispersion of every spectrum, km/s, >= 0 (overrides ``SIGMA_STARS``). Without it and without
        ``SIGMA_STARS`` the spectra are not broadened (the outputs say so).
    overwrite : bool
        Replace existing outputs, and restart an unfinished run that had other options.
    client : None, "local", str or dask.distributed.Client
        None: the chunks run in this process. "local": a ``LocalCluster`` with one single-threaded
        worker per core. A scheduler address, or a ``Client``: that cluster (the workers must see the
        same files, the output folder included).
    chunk_bins : int
        Bins per chunk, >= 1.
    progress : bool
        Progress bars (tqdm).
    sigma_model_kms : float
        The lowest stellar dispersion of the training spectra, km/s, used unless the model records one:
        narrower spectra are broadened to it.
    sigma_max_kms : float
        The highest stellar dispersion of the training spectra, km/s: broader spectra get the
        ``TOO_BROAD`` flag (spectra in between are used as they are).
    muse_fwhm_arcsec : float, optional
        FWHM of the cube's PSF, arcsec, > 0 (see :func:`sfh_ml.observations.hst.muse_psf_fwhm`); needed
        with HST images or a catalogue.
    min_snr : float
        Objects below this continuum S/N per pixel get the ``LOW_SNR`` flag.
    batch_size : int
        Keras batch size.
    keep_work : bool
        Keep ``OUT/work`` (chunks, set-up) after the outputs are written.
    goodness : bool
        Re-synthesise each prediction and score it against the prepared spectrum
        (:func:`sfh_ml.network.predict` with ``goodness``): ``OOD_SCORE`` and ``CHI2_PIXEL`` maps,
        ``chi2_pixel``, ``phot_rms`` and ``ood_score`` columns, ``NETWORK_OUT_OF_DISTRIBUTION`` flags.
    trust : bool
        Score how far to trust each answer (:func:`sfh_ml.network.predict` with ``trust``): a
        ``TRUST`` map and ``trust`` column in [0, 1] and the ``NETWORK_UNTRUSTED`` flag; with
        ``goodness`` also the wrong-redshift check (``redshift_offset_kms`` column, the
        ``NETWORK_WRONG_REDSHIFT`` flag).
    check_redshift : bool
        Measure the redshift of the cube's mean spectrum (emission lines or stellar absorption,
        :func:`sfh_ml.observations.redshift.check_redshift`) and refuse a ``redshift`` more than
        :data:`~sfh_ml.observations.redshift.MAX_OFFSET_KMS` from it (False: ``--no-redshift-check``).

    Raises
    ------
    ValueError
        Bins not understood; no redshift, or a redshift, ``ebv_mw``, ``sigma_obs_kms``,
        ``muse_fwhm_arcsec`` or ``chunk_bins`` out of range.
    """

    maps_path: str | Path | None = None
    redshift: float | None = None
    ebv_mw: float = 0.0
    catalogue_path: str | Path | None = None
    hst_paths: tuple | list | None = None
    bins: str = DEFAULT_BINS
    sigma_obs_kms: float | None = None
    overwrite: bool = False
    client: object = None
    chunk_bins: int = DEFAULT_CHUNK_BINS
    progress: bool = True
    sigma_model_kms: float = SIGMA_MODEL_KMS
    sigma_max_kms: float = SIGMA_MODEL_MAX_KMS
    muse_fwhm_arcsec: float | None = None
    min_snr: float = MIN_SNR
    batch_size: int = DEFAULT_BATCH_SIZE
    keep_work: bool = False
    goodness: bool = False
    trust: bool = False
    check_redshift: bool = True

    def __post_init__(self):
        parse_bins(self.bins)
        if self.redshift is None:
            raise ValueError(
                "no redshift: pass the galaxy's systemic redshift (redshift=, --redshift); V_STARS in MAPS "
                "files is relative to it"
            )
        check_range(self.redshift, "redshift (--redshift)", low=MIN_REDSHIFT)  # NaN, -1 or a sign error
        check_range(self.ebv_mw, "ebv_mw (--ebv-mw, Milky Way E(B-V))", "mag", low=0.0)
        if self.sigma_obs_kms is not None:
            what = "sigma_obs_kms (--sigma-obs, stellar dispersion)"
            check_range(self.sigma_obs_kms, what, "km/s", low=0.0)
        if self.muse_fwhm_arcsec is not None:
            check_range(
                self.muse_fwhm_arcsec, "muse_fwhm_arcsec (--muse-fwhm)", "arcsec", low=0.0, low_open=True
            )
        if int(self.chunk_bins) < 1:
            raise ValueError(f"chunk_bins must be >= 1, got {self.chunk_bins}")

    @classmethod
    def names(cls):
        """The option names, in the order of the fields."""
        return tuple(f.name for f in fields(cls))

    @property
    def bins_label(self):
        """The binning choice in its normal form (``"voronoi:50.0"``, ``"grid:4"``, ``"none"``)."""
        kind, value = parse_bins(self.bins)
        return f"{kind}:{value}" if value is not None else kind


def _file_id(path):
    """Identity of an input file for the options: absolute path, size, modification time."""
    if path is None:
        return None
    path = Path(path).resolve()
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def run_options(config, cube_path, fingerprint, model_file, sigma_model_kms, work):
    """The options of a run as stored in ``OUT/work/options.json`` (JSON types only).

    Parameters
    ----------
    config : ApplyConfig
    cube_path : str or Path
    fingerprint : str
        The model's fingerprint (:func:`~sfh_ml.observations.apply.outputs.model_fingerprint`).
    model_file : str or None
        The model's file, if it was given as one.
    sigma_model_kms : float
        The model's stellar dispersion, km/s (its own, else ``config.sigma_model_kms``).
    work : Path
        The run's work folder.

    Returns
    -------
    dict
        The input files' identities (path, size, modification time), the model, and the options
        that decide the outputs; ``goodness`` and ``trust`` only when asked for (runs without them resume
        as before).
    """
    options = {
        "version": OPTIONS_VERSION,
        "cube": _file_id(cube_path),
        "maps": _file_id(config.maps_path),
        "catalogue": _file_id(config.catalogue_path),
        "hst": sorted(_file_id(p) for p in config.hst_paths) if config.hst_paths else None,
        "model": fingerprint,
        "model_file": model_file,
        "redshift": float(config.redshift),
        "ebv_mw": float(config.ebv_mw),
        "bins": config.bins_label,
        "sigma_obs_kms": None if config.sigma_obs_kms is None else float(config.sigma_obs_kms),
        "sigma_model_kms": sigma_model_kms,
        "sigma_max_kms": max(float(config.sigma_max_kms), sigma_model_kms),
        "muse_fwhm_arcsec": None if config.muse_fwhm_arcsec is None else float(config.muse_fwhm_arcsec),
        "min_snr": float(config.min_snr),
        "chunk_bins": int(config.chunk_bins),
        "batch_size": int(config.batch_size),
        "work": str(work.resolve()),
    }
    if config.goodness:  # only then: runs without it keep the options (and resume) as before
        options["goodness"] = True
    if config.trust:  # likewise
        options["trust"] = True
    return options


def check_run_options(work, options, overwrite):
    """Compare with the options of an earlier run in ``work``: refuse a difference unless ``overwrite``.

    Parameters
    ----------
    work : Path
        The run's work folder (``OUT/work``): removed when it holds chunks without options (an
        unknown run), or another run's and ``overwrite``.
    options : dict
        This run's :func:`run_options`.
    overwrite : bool

    Raises
    ------
    ValueError
        ``work`` holds an unfinished run with other options (each difference named) and not
        ``overwrite``.
    """
    stored_path = work / "options.json"
    if not stored_path.exists():
        if work.exists():  # chunks without options: from an unknown run
            shutil.rmtree(work)
        return
    stored = json.loads(stored_path.read_text())
    keys = sorted((set(stored) | set(options)) - set(NOT_COMPARED))
    diff = [k for k in keys if stored.get(k) != options.get(k)]
    if not diff:
        return
    if overwrite:
        shutil.rmtree(work)
        return
    detail = "; ".join(f"{k}: {stored.get(k)!r} there, {options.get(k)!r} now" for k in diff)
    raise ValueError(
        f"{work.parent} holds an unfinished run with other options ({detail}): resume it with the same "
        "options, choose another output folder, or pass overwrite=True (--overwrite) to start again"
    )
