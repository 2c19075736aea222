"""The BC03 library variant and the held-out sets made with it (issue 9, the synthetic valley)."""

import json

import numpy as np
import pytest

from sfh_ml.cli import main
from sfh_ml.data import DataError
from sfh_ml.synthesis import DatasetConfig, generate, read_dataset
from sfh_ml.synthesis.ssp import YOUNG_LOG_AGE, library_path, load_library


@pytest.fixture(scope="module")
def bc03():
    return load_library(variant="bc03")


def _at(library, age_yr, zh):
    """Index of the SSP nearest in age and [M/H]."""
    return np.argmin(np.abs(np.log10(library.age_yr / age_yr))), np.argmin(np.abs(library.zh - zh))


def test_bc03_library_has_the_grids_of_the_default(library, bc03):
    assert (library.variant, bc03.variant) == ("emiles", "bc03")
    assert library_path("bc03") != library_path() and library_path("bc03").parent == library_path().parent
    for name in ("wave_aa", "age_yr", "zh", "fwhm_aa", "neb_age_yr", "log_u", "line_wave_aa", "line_names"):
        np.testing.assert_array_equal(getattr(bc03, name), getattr(library, name), err_msg=name)
    assert bc03.flux.shape == library.flux.shape and bc03.line_lum.shape == library.line_lum.shape
    assert np.all(bc03.flux > 0)  # BC03 has every age and wavelength (no E-MILES gaps to fill)
    np.testing.assert_array_equal(bc03.young_scale, 1.0)  # no seam scaling
    # surviving mass: nothing lost at birth, then ever less, down to BC03's living stars
    # (the Chabrier mass below the turn-off, 0.41 below 1 M_sun) at 12.6 Gyr
    np.testing.assert_allclose(bc03.mstar_frac[0], 1.0, atol=0.01)  # metal-rich winds: 0.995
    assert np.all(np.diff(bc03.mstar_frac, axis=0) <= 1e-6)
    assert np.all((bc03.mstar_frac[-1] > 0.38) & (bc03.mstar_frac[-1] < 0.5))


def test_bc03_young_part_is_the_default_young_part_without_the_seam_scale(library, bc03):
    n_y = YOUNG_LOG_AGE.size  # 1 to 50 Myr: BC03 in both libraries
    assert library.age_yr[n_y - 1] < 5.1e7 < library.age_yr[n_y]
    np.testing.assert_allclose(
        bc03.flux[:n_y] * library.young_scale[None].astype(float), library.flux[:n_y], rtol=2e-6
    )
    # the nebular grids are the same Cloudy models, scaled in the default by one IMF factor per [M/H]
    ratio = library.line_lum / np.where(bc03.line_lum > 0, bc03.line_lum, np.nan)  # (age, zh, U, line)
    for j in range(library.zh.size):
        r = ratio[:, j][np.isfinite(ratio[:, j]) & (bc03.line_lum[:, j] > 1e-6 * bc03.line_lum[:, j].max())]
        np.testing.assert_allclose(r, np.median(r), rtol=1e-6)
        assert library.young_scale[j].min() < np.median(r) < library.young_scale[j].max()


def test_bc03_old_spectra_differ_from_emiles_measurably_but_boundedly(library, bc03):
    i, j = _at(library, 1e10, 0.0)
    muse = (library.wave_aa > 4750) & (library.wave_aa < 9350)
    ratio = bc03.flux[i, j, muse].astype(float) / library.flux[i, j, muse]
    # Chabrier (BC03) has fewer low-mass stars per unit mass than the unimodal 1.3 IMF: more light
    assert 1.05 < np.median(ratio) < 1.4  # 1.19
    shape = np.median(np.abs(ratio / np.median(ratio) - 1))
    assert 0.005 < shape < 0.05  # 1.0 %: different stars and isochrones, same kind of population
    # the young part agrees in shape far better than the old one differs (same BC03 spectra)
    k, _ = _at(library, 1e7, 0.0)
    young = bc03.flux[k, j, muse].astype(float) * library.young_scale[j, muse] / library.flux[k, j, muse]
    assert np.median(np.abs(young - 1)) < 1e-5


def test_load_library_refuses_another_variant():
    with pytest.raises(DataError, match="'bc03' SSP library, not the 'emiles'"):
        load_library(library_path("bc03"), build=False)
    with pytest.raises(ValueError, match="unknown SSP library"):
        load_library(variant="miles")
    with pytest.raises(ValueError, match="unknown SSP library"):
        DatasetConfig(n=4, library="miles")


def test_bc03_set_differs_from_the_emiles_set_only_through_the_stars(tmp_path, bc03):
    config = DatasetConfig(n=40, seed=3, chunk_size=16)
    a = read_dataset(generate(config, tmp_path / "emiles.h5", progress=False))
    args = ["--n", "40", "--seed", "3", "--chunk-size", "16", "--library", "bc03", "--quiet"]
    status = main(["generate", *args, "--out", str(tmp_path / "bc03.h5")])
    assert status == 0
    b = read_dataset(tmp_path / "bc03.h5")
    assert json.loads(b["attrs"]["config"])["library"] == "bc03"
    assert json.loads(a["attrs"]["config"])["library"] == "emiles"
    assert DatasetConfig.from_json(b["attrs"]["config"]).library == "bc03"
    same = ("sfh", "zh", "sfh_ssp", "mw_log_age", "mw_zh", "mw_log_age_exact", "snr", "snr_phot")
    for key in same + ("tau_bc", "tau_ism", "sigma_kms", "sigma_gas_kms", "log_u", "sky_frac", "sky_z"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # the same standard-normal draws, scaled by each spectrum's own noise
    za = (a["spectra"] - a["spectra_noiseless"]) / a["noise"]
    zb = (b["spectra"] - b["spectra_noiseless"]) / b["noise"]
    np.testing.assert_allclose(za, zb, atol=2e-3)
    # but other stars: other spectra, other light-weighted truths, and the file's light table is BC03's
    shape_a = a["spectra_noiseless"] / np.median(a["spectra_noiseless"], axis=1, keepdims=True)
    shape_b = b["spectra_noiseless"] / np.median(b["spectra_noiseless"], axis=1, keepdims=True)
    assert np.median(np.abs(shape_b / shape_a - 1)) > 0.003
    assert np.mean(a["lw_log_age"] != b["lw_log_age"]) > 0.9
    assert not np.allclose(a["bin_light"], b["bin_light"])
