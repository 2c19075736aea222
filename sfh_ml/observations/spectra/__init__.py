"""Real spectra of any instrument: reading them, preparing them for the network and predicting their
histories (:func:`predict_spectra`; on the command line ``sfh-ml predict --spectrum``).

Reading (:func:`read_spectra`) gives one container, :class:`Spectra`, whatever the format:

============================ ============================================= =========== ==========
format                       read with                                     medium      resolution
============================ ============================================= =========== ==========
SDSS/BOSS ``spec-*.fits``    specutils ``SDSS-III/IV spec``; ``wdisp`` and vacuum      ``wdisp``
                             ``SPECOBJ``/``SPALL`` ``Z`` with astropy
MaNGA DAP test spectra       :func:`~sfh_ml.observations.read_manga_spectra` vacuum (air ``SRES``
                                                                           on reading)
MaNGA DRP LOGRSS / LOGCUBE   specutils ``MaNGA rss`` / ``MaNGA cube``;      vacuum      ``LSFPOST``,
                             resolution extensions with astropy                        ``DISP``,
                                                                                       ``SPECRES``,
                                                                                       ``LSFPRE``,
                                                                                       ``PREDISP``
MUSE 1-D spectra             ``DATA``/``STAT`` (``DQ``) with the spectral  ``CTYPE1``  MUSE LSF
                             WCS of axis 1
FITS tables, ECSV, CSV       astropy tables with named columns             given       columns or
                                                                                       given
specutils ``Spectrum``       the object itself                             given       given
============================ ============================================= =========== ==========

Nothing is assumed silently: wavelengths that look like nm or log10 are refused (unless the format
says so: a column unit, ``loglam``), a medium the file does not state must be given (``medium=``,
``--medium``), spectra without errors need ``snr=`` (``--snr``), an unknown resolution
``fwhm_aa=``/``resolution=`` (``--fwhm``/``--resolution``), observed-frame spectra a redshift.

Preparation (:func:`prepare_observed`) is :func:`~sfh_ml.observations.prepare_spectra`, the cube
path's, for each group of spectra on one grid: vacuum to air (:func:`vacuum_to_air`), NaN, zero and
negative pixels masked (a spectrum that loses many gets ``LOW_COVERAGE``), sky-line windows masked,
Milky Way dereddening, rest frame, flux-conserving resampling with the variance propagated, and the
instrument's LSF plus the stellar dispersion brought to the model's (MUSE LSF plus the model's
dispersion; broader than the training range: ``TOO_BROAD``). Where the caller does not give the
stellar velocity and dispersion, :func:`measure_kinematics` measures them with pPXF
(:func:`sfh_ml.fitting.fit_kinematics`) on the same prepared spectra before broadening.

Output (:func:`predict_spectra`): one row per spectrum with the columns of the per-bin table of
``sfh-ml apply`` (:func:`sfh_ml.observations.apply.result_table`, the one home of that schema) plus
the spectrum's name, file, redshift, kinematics and the names of its quality bits.

Modules: :mod:`~.container` (:class:`Spectra`), :mod:`~.parts` (one file's content and the
readers' shared checks), :mod:`~.fits_files` (SDSS, MaNGA, MUSE 1-D), :mod:`~.tables` (tables and
specutils objects), :mod:`~.reading` (:func:`read_spectra`), :mod:`~.preparation`
(:func:`prepare_observed`, :func:`measure_kinematics`), :mod:`~.prediction` (:func:`predict_spectra`,
:func:`ppxf_spectra`), :mod:`~.writing` (:func:`write_spectra_table`).
"""

from .container import FRAMES, MEDIA, Spectra
from .fits_files import SDSS_DLOGLAM
from .parts import TABLE_FORMATS
from .prediction import UNUSABLE_FLAGS, ppxf_spectra, predict_spectra
from .preparation import measure_kinematics, prepare_observed
from .reading import read_spectra
from .writing import table_kind, write_spectra_table

__all__ = [
    # constants
    "MEDIA",
    "FRAMES",
    "SDSS_DLOGLAM",
    "UNUSABLE_FLAGS",
    "TABLE_FORMATS",
    # reading
    "Spectra",
    "read_spectra",
    # preparation
    "prepare_observed",
    "measure_kinematics",
    # prediction and writing
    "predict_spectra",
    "ppxf_spectra",
    "table_kind",
    "write_spectra_table",
]
