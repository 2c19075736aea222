"""Applying a trained network to a MUSE cube: spatial bins, chunks, maps and tables.

:func:`apply_cube` runs the whole path from the files of a galaxy to its maps, one module per step:

* :mod:`~sfh_ml.observations.apply.options`: :class:`ApplyConfig`, every option of a run, checked;
  their stored form in ``OUT/work/options.json``: a run with other options on the same folder is
  refused, naming the difference (``overwrite=True`` starts it again);
* :mod:`~sfh_ml.observations.apply.run`: :func:`apply_cube`, the pipeline: inputs checked, set-up,
  chunks, outputs;
* :mod:`~sfh_ml.observations.apply.set_up` (once, kept in ``OUT/work/setup.npz``): open the cube
  lazily, check that its rest-frame wavelengths cover the model's grid, bin the spaxels on the cube's
  own S/N (:mod:`~sfh_ml.observations.binning`), average the MAPS kinematics over each bin
  (flux-weighted), put the HST images on the spaxel grid at the MUSE PSF and sum them over each bin
  (:mod:`~sfh_ml.observations.hst`), place the catalogue's clusters on the grid;
* :mod:`~sfh_ml.observations.apply.chunks`: the bins are cut into chunks of nearby bins (at most
  ``chunk_bins`` bins and :data:`~sfh_ml.observations.apply.set_up.MAX_CHUNK_SPAXELS` spaxels), the
  clusters into chunks of :data:`~sfh_ml.observations.apply.set_up.CLUSTER_CHUNK`. Each chunk is one
  call of :func:`run_chunk`, a pure function of (options, kind, index): it sums the member spectra of
  its bins from the lazy cube (bounded memory), prepares them
  (:func:`~sfh_ml.observations.prepare.prepare_spectra`), adds the photometry, predicts
  (:func:`sfh_ml.network.predict`) and writes ``OUT/work/{kind}_XXXXX.npz`` atomically. A chunk whose
  file exists is skipped, so a killed run (even ``kill -9``) resumes where it stopped. Chunks run
  one after the other in this process (the network uses every core) or as tasks on a Dask cluster
  (``client``); both give identical results, because each chunk is computed by the same function
  from the same inputs;
* :mod:`~sfh_ml.observations.apply.summary`: mean ages, [M/H] and mass fractions of the histories;
* :mod:`~sfh_ml.observations.apply.outputs` (written atomically, all or nothing, never over existing
  files unless ``overwrite``): ``maps.fits``, ``bins.fits`` + ``bins.ecsv`` and, with a catalogue,
  ``clusters.fits`` + ``clusters.ecsv``, and ``summary.json``. Then ``OUT/work`` is removed.

Quality flag of every output object (``QUALITY``): the bits of :mod:`sfh_ml.observations.flags`
(bits 0-7: no data, low coverage, too broad, no kinematics, negative flux, low S/N, outside the cube)
OR the network's quality flags (:data:`sfh_ml.network.QUALITY_FLAGS`) shifted left by
:data:`~sfh_ml.observations.flags.NETWORK_FLAG_SHIFT` (bits 8 and up). Predictions are NaN where the
network found the object unusable; the other bits inform. With ``goodness`` each prepared
spectrum's prediction is re-synthesised and scored against it (:mod:`sfh_ml.network.goodness`, with
the prepared variance): the maps get ``OOD_SCORE`` and ``CHI2_PIXEL``, the tables ``chi2_pixel``,
``phot_rms`` and ``ood_score``, and ``NETWORK_OUT_OF_DISTRIBUTION`` marks the objects whose score
exceeds 1.

``parse_bins`` (:mod:`~sfh_ml.observations.binning`), ``NETWORK_FLAG_SHIFT`` and ``quality_bits``
(:mod:`~sfh_ml.observations.flags`) live in their modules and are named here too, for the callers
that import them from here.
"""

from ..binning import parse_bins
from ..flags import NETWORK_FLAG_SHIFT, quality_bits
from .chunks import run_chunk
from .options import (
    DEFAULT_BINS,
    DEFAULT_CHUNK_BINS,
    MIN_SNR,
    SIGMA_MODEL_KMS,
    SIGMA_MODEL_MAX_KMS,
    ApplyConfig,
)
from .outputs import (
    OUTPUT_FILES,
    combine_quality,
    model_fingerprint,
    result_table,
    usable_mask,
    write_ecsv,
)
from .run import ApplyResult, apply_cube
from .set_up import CLUSTER_CHUNK, MAX_CHUNK_SPAXELS
from .summary import OLD_EDGE_YR, YOUNG_EDGE_YR, age_fraction_edges, summarise_histories

__all__ = [
    # options
    "ApplyConfig",
    "DEFAULT_BINS",
    "DEFAULT_CHUNK_BINS",
    "MIN_SNR",
    "SIGMA_MODEL_KMS",
    "SIGMA_MODEL_MAX_KMS",
    # set-up and chunks
    "MAX_CHUNK_SPAXELS",
    "CLUSTER_CHUNK",
    "run_chunk",
    # summary
    "YOUNG_EDGE_YR",
    "OLD_EDGE_YR",
    "age_fraction_edges",
    "summarise_histories",
    # outputs
    "OUTPUT_FILES",
    "combine_quality",
    "usable_mask",
    "result_table",
    "write_ecsv",
    "model_fingerprint",
    # run
    "ApplyResult",
    "apply_cube",
    # from binning and flags
    "parse_bins",
    "NETWORK_FLAG_SHIFT",
    "quality_bits",
]
