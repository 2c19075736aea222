"""The synthetic-set file format: one table that the writer, the reader and this text all use.

A set written by :func:`sfh_ml.synthesis.dataset.generate` is one HDF5 file with the datasets
and root attributes below. Shapes are in terms of ``n`` objects, ``n_wave`` MUSE pixels,
``n_band`` HST bands, ``n_bins`` target age bins, ``n_ssp`` SSP ages, ``n_zh`` SSP metallicities
and ``n_chunks`` seeded chunks. The writer creates the datasets in the order of :data:`DATASETS`;
the reader checks the shapes and types of what it reads against it; the listing below is generated
from it.

"""

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SCHEMA_VERSION",
    "Field",
    "DATASETS",
    "ATTRIBUTES",
    "sfh_param_names",
    "PARAMETRIC_SFH_PARAMS",
    "WORLD_PARAMS",
    "expand",
    "bytes_per_object",
    "describe",
    "field",
]

SCHEMA_VERSION = 2
FLUX_UNIT = "L_sun / Angstrom per M_sun formed"


@dataclass(frozen=True)
class Field:
    """One dataset of a synthetic-set file.

    Attributes
    ----------
    name : str
        HDF5 path (``"sfh_params/<name>"`` stands for one dataset per generator parameter).
    shape : tuple of str
        Symbolic shape: ``"n"``, ``"n_wave"``, ``"n_band"``, ``"n_bins"``, ``"n_bins+1"``, ``"n_ssp"``,
        ``"n_zh"``, ``"n_chunks"``.
    dtype : str
        numpy dtype (``"S10"``: byte strings).
    unit : str
        Physical unit (``""`` if none).
    description : str
        What it holds.
    """

    name: str
    shape: tuple
    dtype: str
    unit: str
    description: str

    @property
    def per_object(self):
        """Whether the first axis runs over objects (and is sliced by ``read_dataset(index=...)``)."""
        return self.shape[:1] == ("n",)

    def resolve(self, dims):
        """The numeric shape for ``dims`` (a dict of dimension sizes); None for an unknown dimension."""
        out = []
        for sym in self.shape:
            base, _, plus = sym.partition("+")
            if dims.get(base) is None:
                return None
            out.append(int(dims[base]) + int(plus or 0))
        return tuple(out)


_F32, _F64 = "float32", "float64"
# Writer order = this order (the file's bytes depend on it: keep new datasets at the end of their group).
DATASETS = (
    Field("spectra", ("n", "n_wave"), _F32, FLUX_UNIT, "noisy MUSE spectra"),
    Field("spectra_noiseless", ("n", "n_wave"), _F32, FLUX_UNIT, "the same without noise"),
    Field("photometry", ("n", "n_band"), _F32, FLUX_UNIT, "noisy HST band-mean flux densities <f_lambda>"),
    Field("photometry_noiseless", ("n", "n_band"), _F32, FLUX_UNIT, "the same without noise"),
    Field("sfh", ("n", "n_bins"), _F32, "", "fraction of the mass formed in each age bin (rows sum to 1)"),
    Field("zh", ("n", "n_bins"), _F32, "dex", "mass-weighted [M/H] of the stars formed in each bin"),
    Field(
        "sfh_ssp", ("n", "n_ssp"), _F32, "", "sfh on the SSP age grid (the truth a full-spectrum fit sees)"
    ),
    Field("zh_ssp", ("n", "n_ssp"), _F32, "dex", "zh on the SSP age grid"),
    Field("family", ("n",), "S10", "", 'SFH family, "skewnormal", "densebasis" or a parametric one'),
    Field("mw_log_age", ("n",), _F64, "log10 yr", "mass-weighted (mass formed) age on the SSP age grid"),
    Field("lw_log_age", ("n",), _F64, "log10 yr", "age weighted by the SSP mix's 5500 A light, before dust"),
    Field("mw_zh", ("n",), _F64, "dex", "mass-weighted [M/H]"),
    Field("lw_zh", ("n",), _F64, "dex", "[M/H] weighted by the SSP mix's 5500 A light, before dust"),
    Field("mstar_frac", ("n",), _F64, "", "stellar mass left per unit mass formed"),
    Field("halpha_lum", ("n",), _F64, "L_sun per M_sun formed", "H-alpha luminosity before dust"),
    Field("tau_bc", ("n",), _F64, "", "V-band optical depth of the birth clouds"),
    Field("tau_ism", ("n",), _F64, "", "V-band optical depth of the diffuse ISM"),
    Field("log_u", ("n",), _F64, "dex", "ionisation parameter"),
    Field("sigma_kms", ("n",), _F64, "km/s", "stellar velocity dispersion"),
    Field("sigma_gas_kms", ("n",), _F64, "km/s", "gas velocity dispersion"),
    Field("snr", ("n",), _F64, "", "S/N per MUSE pixel at 5300-5700 A"),
    Field("snr_phot", ("n", "n_band"), _F64, "", "S/N of each HST flux"),
    Field("noise", ("n", "n_wave"), _F32, FLUX_UNIT, "1-sigma noise per pixel that spectra were drawn with"),
    Field("photometry_err", ("n", "n_band"), _F32, FLUX_UNIT, "1-sigma error that photometry was drawn with"),
    Field(
        "mw_log_age_exact",
        ("n",),
        _F64,
        "log10 yr",
        "mass-weighted age of the continuous history (no SSP-grid floor)",
    ),
    Field("lw_log_age_dust", ("n",), _F64, "log10 yr", "lw_log_age after dust (CF00 at 5500 A)"),
    Field("lw_zh_dust", ("n",), _F64, "dex", "lw_zh after dust (CF00 at 5500 A)"),
    Field("sky_frac", ("n",), _F64, "", "sky + detector share of the noise variance at 5300-5700 A"),
    Field("sky_z", ("n",), _F64, "", "redshift placing the sky lines and throughput in the noise"),
    Field("sfh_params/<name>", ("n",), _F64, "", "generator parameters (NaN where they do not apply)"),
    Field("world/<name>", ("n",), _F64, "", "per-object draws of a held-out world's options (if any)"),
    Field("wave_aa", ("n_wave",), _F64, "Angstrom", "air wavelengths of the spectra"),
    Field("filters", ("n_band",), "S32", "", "pyphot names of the bands"),
    Field(
        "age_bins_yr",
        ("n_bins+1",),
        _F64,
        "yr",
        "edges of the age bins; the first bin also holds younger stars, the last ends at 14.1 Gyr",
    ),
    Field("ssp_age_yr", ("n_ssp",), _F64, "yr", "ages of the SSP library"),
    Field("chunk_done", ("n_chunks",), "bool", "", "completion flag of each seeded chunk (all true)"),
    Field(
        "bin_light",
        ("n_bins", "n_zh"),
        _F64,
        "L_sun / Angstrom per M_sun formed",
        "5500 A light, before dust, of 1 M_sun formed at a constant rate in each age bin, per zh_grid",
    ),
    Field("zh_grid", ("n_zh",), _F64, "dex", "[M/H] of the SSP library (the columns of bin_light)"),
)

# Root attributes: (name, description).
ATTRIBUTES = (
    ("config", "the generation config, JSON (DatasetConfig.to_json)"),
    ("schema_version", f"version of this format ({SCHEMA_VERSION}); checked on read"),
    ("zh_min", "[M/H] range of the SSP grid: lower end"),
    ("zh_max", "upper end"),
    ("max_age_yr", "look-back time at which every history starts, yr"),
    ("flux_unit", f"unit of spectra and photometry ({FLUX_UNIT})"),
    ("wave_grid", "the wavelength grid in words"),
    ("complete", "true once every chunk is written"),
    ("sfh_ml_version", "version of sfh_ml that wrote the file"),
)


# Parameters of the parametric families (sfh_ml.synthesis.parametric), stored after the training
# families' ones only in sets that draw them: the training files keep their datasets and bytes.
PARAMETRIC_SFH_PARAMS = (
    "formation_age_yr",
    "tau_yr",
    "quench_age_yr",
    "log_width",
    "dpl_tau_yr",
    "dpl_alpha",
    "dpl_beta",
)
# Per-object draws of the held-out worlds' options (DatasetConfig), stored as ``world/<name>`` only in
# sets that use the option: library_weight (share of E-MILES in a library mix), lsf_scale (LSF width
# over the nominal MUSE LSF), wave_shift_kms (wavelength-calibration error, km/s), ism_slope (index of
# the ISM power law), birth_cloud_age_yr (yr) and ml_slope (the IMF-like mass-to-light perturbation).
WORLD_PARAMS = (
    "library_weight",
    "lsf_scale",
    "wave_shift_kms",
    "ism_slope",
    "birth_cloud_age_yr",
    "ml_slope",
)


def sfh_param_names(n_tx, parametric=False):
    """Names of the ``sfh_params/<name>`` datasets for ``n_tx`` dense-basis times (and, if
    ``parametric``, those of the parametric families, :data:`PARAMETRIC_SFH_PARAMS`, at the end)."""
    return (
        "peak_age_yr",
        "width_yr",
        "skew",
        "burst_age_yr",
        "burst_duration_yr",
        "burst_frac",
        *(f"tx{i + 1}" for i in range(n_tx)),
        "zh_start",
        "zh_final",
        "zh_gamma",
        *(PARAMETRIC_SFH_PARAMS if parametric else ()),
    )


_BY_NAME = {f.name: f for f in DATASETS}


def field(name):
    """The :class:`Field` of dataset ``name`` (any ``sfh_params/...`` gives the generic entry), or None."""
    if name.startswith("sfh_params/"):
        return _BY_NAME["sfh_params/<name>"]
    if name.startswith("world/"):
        return _BY_NAME["world/<name>"]
    return _BY_NAME.get(name)


def expand(n_tx, parametric=False, world=()):
    """The datasets of a file, in writer order, with ``sfh_params/<name>`` expanded (see
    :func:`sfh_param_names`) and ``world/<name>`` for each name of ``world`` (a subset of
    :data:`WORLD_PARAMS`): list of (name, Field)."""
    unknown = set(world) - set(WORLD_PARAMS)
    if unknown:
        raise ValueError(f"unknown world parameters {sorted(unknown)}; the schema has {WORLD_PARAMS}")
    out = []
    for f in DATASETS:
        if f.name == "sfh_params/<name>":
            out.extend((f"sfh_params/{p}", f) for p in sfh_param_names(n_tx, parametric))
        elif f.name == "world/<name>":
            out.extend((f"world/{p}", f) for p in WORLD_PARAMS if p in world)
        else:
            out.append((f.name, f))
    return out


def bytes_per_object(dims, n_tx, parametric=False, world=()):
    """Bytes the per-object datasets take for one object (``dims`` without ``n``; the other arguments
    as in :func:`expand`)."""
    total = 0
    for _, f in expand(n_tx, parametric, world):
        if f.per_object:
            shape = f.resolve({**dims, "n": 1})
            total += int(np.prod(shape)) * np.dtype(f.dtype).itemsize
    return total


def describe():
    """The listing of :data:`DATASETS` and :data:`ATTRIBUTES` as text (used in this module's docstring)."""
    lines = ["Datasets::", ""]
    for f in DATASETS:
        shape = "(" + ", ".join(f.shape) + ("," if len(f.shape) == 1 else "") + ")"
        unit = f" [{f.unit}]" if f.unit else ""
        lines.append(f"    {f.name:22s}{shape:16s}{f.dtype:8s}{f.description}{unit}")
    lines += ["", "Root attributes::", ""]
    lines += [f"    {name:22s}{text}" for name, text in ATTRIBUTES]
    return "\n".join(lines) + "\n"


__doc__ += describe()
