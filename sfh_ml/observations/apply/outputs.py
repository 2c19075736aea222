"""The outputs of an application run: quality flags, the tables, the maps, and how they are written.

Every output is written under a temporary name and renamed when complete (:func:`save_npz`,
:func:`write_outputs`), so a killed run leaves complete files or none. The per-bin and per-cluster
tables of ``sfh-ml apply`` and the table of ``sfh-ml predict --spectrum`` share one schema, built
by :func:`result_table`.

Quality flag of every output object (``QUALITY``): the bits of :mod:`sfh_ml.observations.flags`
(bits 0-7) OR the network's quality flags shifted left by
:data:`~sfh_ml.observations.flags.NETWORK_FLAG_SHIFT` (bits 8 and up) (:func:`combine_quality`).
"""

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ...files import tmp_path
from ...network.goodness import GOODNESS_KEYS
from ...network.trust import TRUST_KEYS
from .. import flags as qf
from ..binning import SpatialBins
from ..flags import NETWORK_FLAG_SHIFT, quality_bits
from .options import NOT_COMPARED
from .summary import age_fraction_edges, summarise_histories

__all__ = [
    "OUTPUT_FILES",
    "ECSV_BLOCK_ROWS",
    "model_fingerprint",
    "save_npz",
    "combine_quality",
    "usable_mask",
    "count_bits",
    "result_table",
    "write_ecsv",
    "write_outputs",
]

ECSV_BLOCK_ROWS = 20_000  # rows formatted at a time when writing ECSV tables
OUTPUT_FILES = {
    "maps": "maps.fits",
    "bins_fits": "bins.fits",
    "bins_ecsv": "bins.ecsv",
    "clusters_fits": "clusters.fits",
    "clusters_ecsv": "clusters.ecsv",
    "summary": "summary.json",
}
# Units of the maps of mean quantities (FITS BUNIT).
MAP_UNITS = {
    "MW_LOG_AGE": "log10(yr)",
    "MW_LOG_AGE_ERR": "dex",
    "LW_LOG_AGE": "log10(yr)",
    "MW_ZH": "dex",
    "MW_ZH_ERR": "dex",
    "LW_ZH": "dex",
}
# Columns of the clusters' table taken from the catalogue (as catalogue_<name>), where it has them.
CATALOGUE_COLUMNS = ("class_human", "class_ml", "age_myr", "age_myr_err", "mass_msun", "ebv_mag")


# ----------------------------------------------------------------------------------------- provenance
def model_fingerprint(model, meta):
    """A fingerprint of a network: its weights and the grids it was trained for.

    Parameters
    ----------
    model : keras.Model
    meta : dict
        ``get_metadata(model)``.

    Returns
    -------
    str
        32 hex digits of a sha256; equal for models that predict alike (absent optional metadata
        leave it as it was before they existed).
    """
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    for key in ("version", "n_wave", "n_bands", "n_bins", "zh_range", "filters"):
        digest.update(repr(meta[key]).encode())
    for key in ("wave_aa", "age_bins_yr"):
        digest.update(b"none" if meta[key] is None else np.asarray(meta[key], np.float64).tobytes())
    for key in ("bin_light", "zh_grid", "sigma_scale_sfh_cum", "sigma_scale_zh"):  # absent: as before them
        if meta[key] is not None:
            digest.update(key.encode() + np.asarray(meta[key], np.float64).tobytes())
    return digest.hexdigest()[:32]


def save_npz(path, arrays):
    """Write arrays to ``path`` atomically (a complete file or none).

    Parameters
    ----------
    path : Path
    arrays : dict of str to ndarray
    """
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------------------- quality
def combine_quality(res, snr, min_snr):
    """The output quality flag of each object: preparation bits, network bits (shifted), ``LOW_SNR``.

    Parameters
    ----------
    res : dict
        ``flags`` (:mod:`sfh_ml.observations.flags` bits) and ``network_quality``
        (:data:`sfh_ml.network.QUALITY_FLAGS` bits), each shape (n,).
    snr : ndarray, shape (n,)
        Continuum S/N per pixel (NaN counts as low).
    min_snr : float
        Below it: ``LOW_SNR``.

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    q = res["flags"] | (res["network_quality"] << NETWORK_FLAG_SHIFT)
    with np.errstate(invalid="ignore"):
        q[~(snr >= min_snr)] |= qf.LOW_SNR
    return q.astype(np.int64)


def usable_mask(quality):
    """True where the network found the object usable (no bit of ``QUALITY_UNUSABLE`` set).

    Parameters
    ----------
    quality : ndarray of int, shape (n,)
        Output quality flags (:func:`combine_quality`).

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    from ...network import QUALITY_UNUSABLE

    return ((quality >> NETWORK_FLAG_SHIFT) & QUALITY_UNUSABLE) == 0


def count_bits(quality):
    """How many objects have each bit of :func:`~sfh_ml.observations.flags.quality_bits` set.

    Parameters
    ----------
    quality : ndarray of int, shape (n,)

    Returns
    -------
    dict of str to int
        Only the bits that are set somewhere.
    """
    return {
        name: int(np.count_nonzero(quality & bit))
        for name, bit in quality_bits().items()
        if np.any(quality & bit)
    }


# ----------------------------------------------------------------------------------------- tables
def result_table(
    res,
    summary,
    columns,
    meta,
    options,
    *,
    photometry,
    flux_unit,
    photometry_source,
    sigma_source,
    photometry_err=None,
    units=None,
    extra_meta=None,
):
    """One table row per object: the schema of the per-bin, per-cluster and per-spectrum tables.

    Columns, in order: ``columns``; the predictions (``sfh``, ``sfh_cum``, ``sfh_cum_sigma``, ``zh``,
    ``zh_sigma``, shape (n, n_bins), float32); the 2-sigma half-widths (``sfh_cum_2sigma``,
    ``zh_2sigma``: the 95.45 % intervals, heavier-tailed than 2 sigma) if given; the goodness of fit
    (``chi2_pixel``, ``phot_rms``, ``ood_score``) and the trust score (``trust``,
    ``redshift_offset_kms``) if computed; ``summary``;
    ``photometry`` (in ``flux_unit``), ``coverage``,
    ``quality``; ``photometry_err`` if given.

    Parameters
    ----------
    res : dict of ndarray
        The predictions and ``coverage`` (fraction of the model grid with data) and ``quality``
        (:func:`combine_quality`), shape (n, ...).
    summary : dict of ndarray, shape (n,)
        :func:`~sfh_ml.observations.apply.summary.summarise_histories`, possibly with more columns.
    columns : dict of ndarray, shape (n, ...)
        The columns that identify and describe each object (ids, positions, S/N, kinematics...).
    meta : dict
        The model's metadata (``get_metadata``): ``age_bins_yr`` go into the table's metadata with
        the young and old edges (:func:`~sfh_ml.observations.apply.summary.age_fraction_edges`).
    options : dict
        The run's options (those of :data:`~sfh_ml.observations.apply.options.NOT_COMPARED` left
        out), into the metadata.
    photometry : ndarray, shape (n, n_bands)
        The network's HST fluxes, in ``flux_unit``.
    flux_unit : str or None
    photometry_source, sigma_source : str
        Where the photometry and the stellar dispersion came from (metadata).
    photometry_err : ndarray, shape (n, n_bands), optional
        1-sigma errors of ``photometry`` (the clusters').
    units : dict of str to str, optional
        Units of columns of ``columns`` (e.g. ``{"ra": "deg"}``).
    extra_meta : dict, optional
        More metadata, after the rest.

    Returns
    -------
    astropy.table.Table
    """
    from astropy.table import Table

    from ...network import INTERVAL_KEYS, PREDICTION_KEYS

    i_young, i_old = age_fraction_edges(meta["age_bins_yr"])
    t = Table()
    for k, v in columns.items():
        t[k] = v
    for k in PREDICTION_KEYS:  # float32: the network's own precision, half the size of the tables
        t[k] = res[k].astype(np.float32)
    # the 2-sigma half-widths (spectra tables), the goodness of fit and the trust score, if computed
    for k in INTERVAL_KEYS + GOODNESS_KEYS + TRUST_KEYS:
        if k in res:
            t[k] = res[k].astype(np.float32)
    for k, v in summary.items():
        t[k] = v
    t["photometry"] = photometry
    t["photometry"].unit = flux_unit
    t["coverage"] = res["coverage"]
    t["quality"] = res["quality"]
    if photometry_err is not None:
        t["photometry_err"] = photometry_err
    for k in ("mw_log_age_err", "mw_zh", "mw_zh_err", "lw_zh", "zh", "zh_sigma", "zh_2sigma"):  # dex
        if k in t.colnames:  # no FITS unit for dex
            t[k].description = "dex"
    for k in ("mw_log_age", "lw_log_age"):
        t[k].description = "log10(age / yr)"
    if "redshift_offset_kms" in t.colnames:
        t["redshift_offset_kms"].unit = "km / s"
    for k, unit in (units or {}).items():
        t[k].unit = unit
    t.meta.update(
        age_bins_yr=[float(a) for a in meta["age_bins_yr"]],
        young_edge_yr=float(meta["age_bins_yr"][i_young]),
        old_edge_yr=float(meta["age_bins_yr"][i_old]),
        quality_bits=quality_bits(),
        photometry_source=str(photometry_source),
        sigma_source=str(sigma_source),
        options={k: v for k, v in options.items() if k not in NOT_COMPARED},
    )
    t.meta.update(extra_meta or {})
    return t


def write_ecsv(table, path, block=None):
    """Write a table as ECSV, block by block.

    astropy formats every row in memory at once (about 10 kB per row of these tables: 10 GB for a
    10^6-spaxel cube), so the blocks after the first are written without their header (the same for
    every block: same columns, types and metadata).

    Parameters
    ----------
    table : astropy.table.Table
    path : str or Path
        Written in place (UTF-8): give a temporary name for an atomic write.
    block : int, optional
        Rows per block (default :data:`ECSV_BLOCK_ROWS`).
    """
    block = ECSV_BLOCK_ROWS if block is None else int(block)
    with open(path, "w", encoding="utf-8") as fh:  # paths in the metadata may be any text
        for start in range(0, max(len(table), 1), block):
            buffer = io.StringIO()
            table[start : start + block].write(buffer, format="ascii.ecsv")
            lines = buffer.getvalue().splitlines(keepends=True)
            if start > 0:
                first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
                lines = lines[first + 1 :]  # the header comments and the line of column names
            fh.writelines(lines)


def _write_table(table, fits_path, ecsv_path, cards):
    """The table as ECSV (full metadata) and FITS (the provenance keywords; FITS headers hold no nesting)."""
    write_ecsv(table, ecsv_path)
    flat = table.copy(copy_data=False)
    flat.meta = {key: value for key, value, _ in cards}
    flat.write(fits_path, format="fits")


def _header_cards(options, setup, meta, i_young, i_old):
    """Provenance keywords shared by every FITS output: (key, value, comment)."""
    age = meta["age_bins_yr"]
    cards = [
        ("SFHMODEL", options["model"][:16], "sha256 of the model's weights (first 16 hex)"),
        ("CUBE", _fits_text(Path(options["cube"][0]).name), "MUSE cube"),
        ("BINNING", options["bins"], "spatial bins"),
        ("REDSHIFT", options["redshift"], "systemic redshift"),
        ("EBV_MW", options["ebv_mw"], "Milky Way E(B-V) removed, mag"),
        ("SIGMODEL", options["sigma_model_kms"], "model's stellar dispersion, km/s"),
        ("SIGMAX", options["sigma_max_kms"], "broader than this: TOO_BROAD, km/s"),
        ("SIGSRC", str(setup["sigma_source"]), "observed dispersion from"),
        ("VELSRC", "MAPS V_STARS" if bool(setup["has_v"]) else "redshift only", "rest frame from"),
        ("PHOTSRC", str(setup["photometry_source"]), "HST photometry"),
        ("YOUNGAGE", float(age[i_young]), "F_YOUNG: mass formed less than this ago, yr"),
        ("OLDAGE", float(age[i_old]), "F_OLD: mass formed more than this ago, yr"),
        ("QSHIFT", NETWORK_FLAG_SHIFT, "network quality bits start here"),
    ]
    for name, bit in quality_bits().items():
        cards.append((f"Q{int(np.log2(bit)):d}"[:8], name[:60], "QUALITY bit"))
    return cards


def _fits_text(text):
    """``text`` as FITS headers hold it (printable ASCII): other characters as backslash escapes."""
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in str(text))


# ----------------------------------------------------------------------------------------- writing
def _maps_hdus(bins, setup, bins_res, summ, cards, wcs_header):
    """``maps.fits``: the provenance keywords, then one image per mean quantity, S/N, bins, quality."""
    from astropy.io import fits

    primary = fits.PrimaryHDU()
    for key, value, comment in cards:  # long strings (CONTINUE cards) go without their comment
        primary.header[key] = value if len(str(value)) > 40 else (value, comment)
    hdus = [primary]
    for key, values in summ.items():
        name = key.upper()
        hdu = fits.ImageHDU(bins.paint(values).astype(np.float32), header=wcs_header, name=name)
        hdu.header["BUNIT"] = MAP_UNITS.get(name, "")
        hdus.append(hdu)
    hdus.append(fits.ImageHDU(bins.paint(setup["bin_snr"]).astype(np.float32), header=wcs_header, name="SNR"))
    hdus.append(fits.ImageHDU(bins.bin_id.astype(np.int32), header=wcs_header, name="BIN_ID"))
    quality_map = bins.paint(bins_res["quality"], fill=qf.NO_DATA).astype(np.int32)
    hdus.append(fits.ImageHDU(quality_map, header=wcs_header, name="QUALITY"))
    for key in ("ood_score", "chi2_pixel", "trust"):  # the goodness of fit and the trust, if computed
        if key in bins_res:
            image = bins.paint(bins_res[key]).astype(np.float32)
            hdus.append(fits.ImageHDU(image, header=wcs_header, name=key.upper()))
    return fits.HDUList(hdus)


def _bin_columns(bins, setup, cube):
    """The per-bin table's own columns: id, centre (pixels and sky), size, S/N, kinematics."""
    ra, dec = cube.wcs.pixel_to_world_values(bins.x_centre, bins.y_centre)
    return {
        "bin_id": np.arange(bins.n_bins),
        "x_centre": bins.x_centre,
        "y_centre": bins.y_centre,
        "ra": np.asarray(ra),
        "dec": np.asarray(dec),
        "n_spaxels": bins.n_spaxels,
        "snr": setup["bin_snr"],
        "v_kms": setup["v_kms"],
        "sigma_kms": setup["sigma_kms"],
    }


def _cluster_columns(setup, cl_res, catalogue):
    """The per-cluster table's own columns: id, position, the catalogue's values, the aperture."""
    columns = {"id": np.asarray(catalogue["id"]), "ra": setup["cl_ra"], "dec": setup["cl_dec"]}
    columns.update(x_pix=setup["cl_x"], y_pix=setup["cl_y"], inside_cube=setup["cl_inside"])
    for key in CATALOGUE_COLUMNS:
        if key in catalogue.colnames:
            columns[f"catalogue_{key}"] = np.asarray(catalogue[key])
    columns.update(snr=cl_res["snr"], area_spaxels=cl_res["area_spaxels"])
    columns.update(psf_fraction=cl_res["psf_fraction"], reason=cl_res["reason"].astype(str))
    return columns


def write_outputs(options, setup, meta, bins_res, cl_res, cube, catalogue, files, summary):
    """Write every output under a temporary name, then rename them all (all or nothing).

    Parameters
    ----------
    options : dict
        The run's options (:func:`~sfh_ml.observations.apply.options.run_options`).
    setup : dict of ndarray
        The run's set-up (:func:`~sfh_ml.observations.apply.set_up.make_setup`).
    meta : dict
        The model's metadata.
    bins_res, cl_res : dict of ndarray
        The bins' and the clusters' predictions with their ``quality`` (``cl_res`` None without a
        catalogue).
    cube : MuseCube
        For the WCS and the flux unit.
    catalogue : astropy.table.Table or None
    files : dict of str to Path
        The outputs to write (keys of :data:`OUTPUT_FILES`); the outputs of an earlier run in the
        same folder that are not among them are removed.
    summary : dict
        The content of ``summary.json``.
    """
    i_young, i_old = age_fraction_edges(meta["age_bins_yr"])
    bins = SpatialBins(setup["bin_id"], setup["bin_snr"])
    summ = summarise_histories(bins_res, meta["age_bins_yr"], meta["bin_light"], meta["zh_grid"])
    cards = _header_cards(options, setup, meta, i_young, i_old)
    unit = str(cube.flux_unit)
    sources = {
        "photometry_source": str(setup["photometry_source"]),
        "sigma_source": str(setup["sigma_source"]),
    }
    tmps = {}

    def tmp(key):
        tmps[key] = tmp_path(files[key])
        tmps[key].unlink(missing_ok=True)  # left by a run killed while writing (kill -9): never ours
        return tmps[key]

    try:
        _maps_hdus(bins, setup, bins_res, summ, cards, cube.wcs.to_header()).writeto(tmp("maps"))
        table = result_table(
            bins_res,
            summ,
            _bin_columns(bins, setup, cube),
            meta,
            options,
            photometry=setup["photometry"],
            flux_unit=unit,
            units={"ra": "deg", "dec": "deg"},
            **sources,
        )
        _write_table(table, tmp("bins_fits"), tmp("bins_ecsv"), cards)
        if cl_res is not None:
            cs = summarise_histories(cl_res, meta["age_bins_yr"], meta["bin_light"], meta["zh_grid"])
            with np.errstate(invalid="ignore"):
                cs["mw_age_myr"] = 10 ** cs["mw_log_age"] / 1e6
                cs["lw_age_myr"] = 10 ** cs["lw_log_age"] / 1e6
            table = result_table(
                cl_res,
                cs,
                _cluster_columns(setup, cl_res, catalogue),
                meta,
                options,
                photometry=setup["cl_photometry"],
                photometry_err=setup["cl_photometry_err"],
                flux_unit=unit,
                units={"ra": "deg", "dec": "deg"},
                extra_meta={"catalogue": options["catalogue"][0]},
                **sources,
            )
            _write_table(table, tmp("clusters_fits"), tmp("clusters_ecsv"), cards)
        tmp("summary").write_text(json.dumps(summary, indent=1))
        for key in tmps:
            os.replace(tmps[key], files[key])
        for name in OUTPUT_FILES.values():  # outputs of an earlier run that this one does not write
            if not any(path.name == name for path in files.values()):
                (files["summary"].parent / name).unlink(missing_ok=True)
    finally:
        for path in tmps.values():
            if path.exists():
                path.unlink()
