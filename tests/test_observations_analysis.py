"""Radii in the galaxy's plane, profiles, gradients and comparisons (sfh_ml.observations.analysis), and
the application chapter's figures in sfh_ml.plotting.

Inputs are seeded synthetic radii and values with known gradients; the expected numbers come from the
geometry of an inclined disc or from least-squares theory, each said where it is used.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from sfh_ml.observations import analysis as an  # noqa: E402
from sfh_ml.observations import flags as qf  # noqa: E402

PIXEL_ARCSEC = 0.2
CENTRE_DEG = (150.1, 60.0)  # a high declination: RA offsets must be scaled by cos(Dec)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def tan_wcs(ny=41, nx=41, centre_deg=CENTRE_DEG, pixel_arcsec=PIXEL_ARCSEC):
    """A TAN WCS, north up and east left, with ``centre_deg`` on the central pixel."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(centre_deg)
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.cd = np.array([[-pixel_arcsec / 3600.0, 0.0], [0.0, pixel_arcsec / 3600.0]])
    return w


def disc_to_pixel(r_arcsec, theta, inclination_deg, pa_deg, ny=41, nx=41):
    """Pixel position of a point of a thin disc at radius r and azimuth theta (from the receding
    major axis): the forward projection, written independently of the code under test."""
    pa, inc = np.radians(pa_deg), np.radians(inclination_deg)
    along = r_arcsec * np.cos(theta)  # along the major axis, on the sky
    across = r_arcsec * np.sin(theta) * np.cos(inc)  # along the minor axis, foreshortened
    east = along * np.sin(pa) - across * np.cos(pa)
    north = along * np.cos(pa) + across * np.sin(pa)
    # TAN: intermediate world coordinates are the gnomonic (standard) coordinates, in degrees.
    return (nx - 1) / 2.0 - east / PIXEL_ARCSEC, (ny - 1) / 2.0 + north / PIXEL_ARCSEC


# ----------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("inclination_deg, pa_deg", [(0.0, 0.0), (50.0, 30.0), (70.0, 173.1)])
def test_deprojected_radius_inverts_the_disc_projection(inclination_deg, pa_deg):
    rng = np.random.default_rng(1)
    r = rng.uniform(0.1, 3.5, 200)
    theta = rng.uniform(-np.pi, np.pi, 200)
    x, y = disc_to_pixel(r, theta, inclination_deg, pa_deg)
    radius, azimuth = an.deprojected_radius(tan_wcs(), x, y, CENTRE_DEG, inclination_deg, pa_deg)
    # Exact up to float rounding of the WCS (1e-6 arcsec is 5e-6 of a spaxel).
    np.testing.assert_allclose(radius, r, atol=1e-6)
    np.testing.assert_allclose(np.angle(np.exp(1j * (azimuth - theta))), 0.0, atol=1e-6)


def test_minor_axis_is_stretched_by_one_over_cos_i():
    # 10 spaxels (2") from the centre on the sky: radius 2" on the major axis, 2 / cos(60 deg) = 4"
    # on the minor axis.
    w, pa = tan_wcs(), 0.0  # major axis north-south
    r_major = an.deprojected_radius(w, 20.0, 30.0, CENTRE_DEG, 60.0, pa)[0]
    r_minor = an.deprojected_radius(w, 10.0, 20.0, CENTRE_DEG, 60.0, pa)[0]
    assert r_major == pytest.approx(2.0, rel=1e-6)
    assert r_minor == pytest.approx(4.0, rel=1e-6)
    rmap = an.radius_map(w, (41, 41), CENTRE_DEG, 60.0, pa)
    assert rmap.shape == (41, 41) and rmap[20, 20] == pytest.approx(0.0, abs=1e-6)
    assert rmap[30, 20] == pytest.approx(r_major) and rmap[20, 10] == pytest.approx(r_minor)


def test_an_edge_on_disc_is_refused():
    with pytest.raises(ValueError, match="inclination"):
        an.deprojected_radius(tan_wcs(), 0.0, 0.0, CENTRE_DEG, 90.0, 0.0)


@pytest.mark.slow
def test_radius_map_agrees_with_the_mock_galaxy_truth(tmp_path):
    from sfh_ml.observations import load_mock_truth, read_muse_cube, write_mock_galaxy

    g = write_mock_galaxy(tmp_path, seed=3, shape=(16, 20), n_clusters=3, progress=False)
    maps, _, p = load_mock_truth(g.truth)
    cube = read_muse_cube(g.cube)
    rmap = an.radius_map(cube.wcs, cube.shape, p["centre_deg"], p["inclination_deg"], p["pa_deg"])
    cube.close()
    # The mock's own radius (in disc scale lengths) from its pixel geometry: the same to 1e-5 arcsec.
    np.testing.assert_allclose(rmap, maps["RADIUS_RD"] * p["r_d_arcsec"], atol=1e-5)


# ----------------------------------------------------------------------------------------- bins
def test_bin_average_is_the_weighted_mean_of_the_members():
    bin_id = np.array([[0, 0, 1], [2, 2, -1]])
    log_age = np.array([[9.0, 10.0, 8.0], [np.nan, 9.5, 7.0]])
    mass = np.array([[1.0, 3.0, 2.0], [5.0, 1.0, 9.0]])
    out = an.bin_average(bin_id, log_age, mass)
    # bin 0: (1 x 9 + 3 x 10) / 4; bin 1 alone; bin 2: the NaN spaxel is left out with its weight.
    np.testing.assert_allclose(out, [9.75, 8.0, 9.5])
    np.testing.assert_allclose(an.bin_average(bin_id, log_age), [9.5, 8.0, 9.5])
    all_nan = an.bin_average(bin_id, np.full((2, 3), np.nan))
    assert np.isnan(all_nan).all()


# ----------------------------------------------------------------------------------------- gradients
def _line(n=300, slope=-0.1, intercept=0.2, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.0, 10.0, n)
    return r, intercept + slope * r + noise * rng.standard_normal(n)


def test_fit_gradient_recovers_a_known_slope_with_the_textbook_error():
    r, v = _line()
    fit = an.fit_gradient(r, v)
    # Ordinary least squares: sigma_slope = sigma / sqrt(sum (r - mean r)^2), sigma = 0.05 here.
    expected_err = 0.05 / np.sqrt(np.sum((r - r.mean()) ** 2))
    assert fit.slope_err == pytest.approx(expected_err, rel=0.15)
    assert abs(fit.slope + 0.1) < 3 * fit.slope_err
    assert abs(fit.intercept - 0.2) < 3 * fit.intercept_err
    assert fit.n == 300 and fit.scatter == pytest.approx(0.05, rel=0.15)
    assert fit(0.0) == pytest.approx(fit.intercept)


def test_gradient_errors_cover_the_truth_68_per_cent_of_the_time():
    # 400 independent realisations with the right quoted errors: the true slope lies within 1 sigma
    # in 68.3 % of them (binomial standard deviation 2.3 %).
    inside = []
    for seed in range(400):
        r, v = _line(n=60, seed=seed)
        fit = an.fit_gradient(r, v, sigma=np.full(r.size, 0.05))
        inside.append(abs(fit.slope + 0.1) <= fit.slope_err)
    assert np.mean(inside) == pytest.approx(0.683, abs=0.07)


def test_quoted_errors_too_small_are_inflated_by_the_scatter():
    r, v = _line(noise=0.05)
    ols = an.fit_gradient(r, v)
    tiny = an.fit_gradient(r, v, sigma=np.full(r.size, 0.005))  # 10 times too small
    assert tiny.reduced_chi2 == pytest.approx(100.0, rel=0.25)
    assert tiny.slope_err == pytest.approx(ols.slope_err, rel=0.02)
    honest = an.fit_gradient(r, v, sigma=np.full(r.size, 0.5))  # 10 times too large: kept as quoted
    assert honest.slope_err == pytest.approx(10 * ols.slope_err, rel=0.2)


def test_fit_gradient_leaves_out_bad_points_and_refuses_too_few():
    r, v = _line(n=50)
    v[:5] = np.nan
    sigma = np.full(r.size, 0.05)
    sigma[5:10] = 0.0
    assert an.fit_gradient(r, v, sigma).n == 40
    assert an.fit_gradient(r, v, r_range=(0.0, 5.0)).n == np.sum(np.isfinite(v) & (r <= 5.0))
    with pytest.raises(ValueError, match="at least 3"):
        an.fit_gradient([1.0, 2.0], [0.0, 1.0])


def test_radial_profile_follows_the_gradient():
    r, v = _line(n=2000, noise=0.05, seed=4)
    prof = an.radial_profile(r, v, np.arange(0.0, 11.0, 2.0))
    assert prof.n.sum() == 2000
    line = 0.2 - 0.1 * prof.radius
    assert np.all(np.abs(prof.median - line) < 4 * prof.error)
    assert an.radial_profile(r, v, 4).edges.size == 5


def test_radial_profile_errors_are_those_of_a_median():
    # A flat profile (no gradient inside the annuli to widen them): the error of a median of n
    # Gaussian values is 1.2533 sigma / sqrt(n), and the spread is sigma.
    r, v = _line(n=4000, slope=0.0, noise=0.05, seed=6)
    prof = an.radial_profile(r, v, np.arange(0.0, 11.0, 2.0))
    np.testing.assert_allclose(prof.error, 1.2533 * 0.05 / np.sqrt(prof.n), rtol=0.15)
    np.testing.assert_allclose(prof.spread, 0.05, rtol=0.15)


# ----------------------------------------------------------------------------------------- comparisons
def test_compare_with_truth_gives_the_expected_correlation():
    rng = np.random.default_rng(2)
    true = rng.uniform(-1.0, 0.2, 5000)
    rec = true + 0.1 + 0.2 * rng.standard_normal(true.size)
    out = an.compare_with_truth(rec, true)
    # r = std(true) / sqrt(var(true) + 0.2^2); std of U(-1, 0.2) = 1.2 / sqrt(12).
    s = 1.2 / np.sqrt(12)
    assert out["pearson_r"] == pytest.approx(s / np.hypot(s, 0.2), abs=0.02)
    assert out["bias"] == pytest.approx(0.1, abs=0.01)
    assert out["nmad"] == pytest.approx(0.2, rel=0.05)
    rec[:10] = np.nan
    assert an.compare_with_truth(rec, true)["n"] == 4990
    assert np.isnan(an.compare_with_truth(np.ones(5), np.arange(5.0))["pearson_r"])


def test_cluster_age_agreement_in_dex():
    ref = np.array([2.0, 10.0, 100.0, 1000.0, -9999.0, 50.0])
    ages = np.array([4.0, 5.0, 200.0, 500.0, 30.0, np.nan])  # factors 2, 1/2, 2, 1/2; then missing
    out = an.cluster_age_agreement(ages, ref)
    assert out["n"] == 4
    assert out["median_abs_dlog_age"] == pytest.approx(np.log10(2.0))
    assert out["median_dlog_age"] == pytest.approx(0.0, abs=1e-12)
    assert out["frac_within"] == 0.0  # log10(2) = 0.301 > 0.3
    assert an.cluster_age_agreement(ages, ref, tolerance_dex=0.31)["frac_within"] == 1.0
    assert np.isnan(out["dlog_age"][4]) and np.isnan(out["dlog_age"][5])
    only_two = an.cluster_age_agreement(ages, ref, usable=[True, False, True, False, True, True])
    assert only_two["n"] == 2 and only_two["median_dlog_age"] == pytest.approx(np.log10(2.0))


# ----------------------------------------------------------------------------------------- flags
def test_usable_objects_and_flag_counts():
    from sfh_ml.network import QUALITY_FLAGS
    from sfh_ml.observations.apply import NETWORK_FLAG_SHIFT

    no_spectrum = QUALITY_FLAGS["no_spectrum"] << NETWORK_FLAG_SHIFT
    missing = QUALITY_FLAGS["missing_bands"] << NETWORK_FLAG_SHIFT
    q = np.array([0, qf.LOW_SNR, no_spectrum, missing, qf.NO_DATA, qf.TOO_BROAD | missing])
    np.testing.assert_array_equal(an.usable_objects(q), [True, False, False, True, False, True])
    np.testing.assert_array_equal(an.usable_objects(q, exclude=()), [True, True, False, True, False, True])
    np.testing.assert_array_equal(
        an.usable_objects(q, exclude=("TOO_BROAD", "NETWORK_MISSING_BANDS")),  # LOW_SNR now kept
        [True, True, False, False, False, False],
    )
    with pytest.raises(ValueError, match="unknown flag"):
        an.usable_objects(q, exclude=("NOT_A_FLAG",))
    t = an.flag_table(bins=q, clusters=[qf.LOW_SNR])
    counts = dict(zip(t["name"], t["bins"]))
    assert counts["NETWORK_MISSING_BANDS"] == 2 and counts["LOW_SNR"] == 1 and counts["OUTSIDE_CUBE"] == 0
    assert dict(zip(t["name"], t["clusters"]))["LOW_SNR"] == 1


def test_pick_regions_finds_centre_arm_and_outskirts():
    rng = np.random.default_rng(3)
    radius = rng.uniform(0.0, 10.0, 500)
    score = np.exp(-0.5 * ((radius - 5.0) / 0.3) ** 2) + 0.01 * rng.random(500)  # a ring at 5
    usable = np.ones(500, bool)
    usable[np.argmin(radius)] = False  # the very centre is flagged: the next one is the centre
    picks = an.pick_regions(radius, usable, score=score)
    assert picks["centre"] == np.argsort(radius)[1]
    assert abs(radius[picks["arm"]] - 5.0) < 0.3
    assert radius[picks["outskirts"]] == pytest.approx(np.quantile(radius[usable], 0.9), abs=0.1)
    assert "arm" not in an.pick_regions(radius, usable)
    with pytest.raises(ValueError, match="no usable"):
        an.pick_regions(radius, np.zeros(500, bool))


# ----------------------------------------------------------------------------------------- figures
def test_application_figures_draw_what_they_are_given():
    from sfh_ml import plotting as pl

    w = tan_wcs(12, 10)
    image = np.arange(120.0).reshape(12, 10)
    ax = pl.plot_sky_map(image, w, label="x", marks={"centre": (4.5, 5.5)})
    assert hasattr(ax, "coords")  # a WCSAxes: RA and Dec on the axes
    assert ax.images[0].get_array().shape == (12, 10)
    fig, axes = pl.plot_sky_maps({"a": dict(image=image), "b": dict(image=-image, cmap="magma")}, w, ncols=2)
    assert len(axes) == 2
    bin_id = np.repeat(np.arange(60), 2).reshape(12, 10)
    bin_id[0, 0] = -1
    ax = pl.plot_bin_map(bin_id, w, centres=(np.zeros(60), np.zeros(60)))
    assert np.ma.is_masked(ax.images[0].get_array()[0, 0])  # unbinned: blank

    wave = np.linspace(4750.0, 9350.0, 500)
    ax = pl.plot_cube_spectrum(
        wave, np.ones(500), np.full(500, 0.01), sky_windows_aa=[(5572, 5583)], redshift=0.003
    )
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), np.ones(500))

    r, v = _line(n=50)
    fit = an.fit_gradient(r, v)
    ax = pl.plot_radial_gradient(
        r, v, true=v, recovered_err=np.full(50, 0.05), fit_recovered=fit, fit_true=fit
    )
    assert f"{fit.slope:+.3g} ± {fit.slope_err:.2g}" in ax.texts[0].get_text()

    ax = pl.plot_cluster_ages([2.0, 100.0, 1000.0], [3.0, 90.0, np.nan], usable=[True, False, True])
    assert len(ax.containers) == 2  # usable and flagged

    edges = np.logspace(6.8, 10.15, 9)
    row = dict(
        sfh_cum=np.linspace(0.1, 1.0, 8),
        sfh_cum_sigma=np.full(8, 0.05),
        zh=np.zeros(8),
        zh_sigma=np.full(8, 0.1),
    )
    axs = pl.plot_region_histories(edges, {"centre": row, "arm": row})
    assert len(axs[0].get_legend().get_texts()) == 2
