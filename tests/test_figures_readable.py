"""Every figure of sfh_ml.plotting is readable at the book's width: drawn on small synthetic inputs,
it is at most BOOK_WIDTH_IN wide with text of at least 9 pt, no two texts overlap, every data panel
has both axis labels, and no row holds more than two panels."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from astropy.wcs import WCS  # noqa: E402
from conftest import build_tiny, make_params  # noqa: E402
from matplotlib.text import Text  # noqa: E402

import sfh_ml.plotting as pl  # noqa: E402
from sfh_ml.plotting import BOOK_WIDTH_IN  # noqa: E402
from sfh_ml.synthesis.instrument import muse_lsf_fwhm  # noqa: E402

MIN_FONT_PT = 9.0
TOLERANCE_PX = 1.0
AGE_BINS_YR = np.array([1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 1.4e10])
RESULTS = json.loads((Path(pl.__file__).parents[1] / "pretrained" / "results.json").read_text())


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------ the checks
def _drawn_texts(fig, monkeypatch):
    """(Text, text, extent, own extent) of every text drawn on the canvas, as finally drawn.

    Recorded inside ``Text.draw`` so that a WCSAxes' tick labels (one artist drawn once per label)
    and only the ticks in view count; a text drawn again (the layout engine draws WCSAxes once to
    measure them) counts where it was drawn last. A text framed by a box (``bbox=``) counts with
    its box (``extent``; ``own extent`` is the text's alone).
    """
    drawn = {}
    original = Text.draw

    def recording_draw(self, renderer):
        original(self, renderer)
        if self.get_visible() and self.get_text().strip() and self.figure is fig:
            box = self.get_bbox_patch()
            own = self.get_window_extent(renderer)
            extent = box.get_window_extent(renderer) if box is not None else own
            drawn[id(self), self.get_text()] = (self, self.get_text(), extent, own)

    with monkeypatch.context() as m:
        m.setattr(Text, "draw", recording_draw)
        fig.canvas.draw()
    return list(drawn.values())


def _overlap(a, b):
    return (
        min(a.x1, b.x1) - max(a.x0, b.x0) > TOLERANCE_PX and min(a.y1, b.y1) - max(a.y0, b.y0) > TOLERANCE_PX
    )


def _data_axes(fig):
    """The panels with data: not colour bars, not turned off."""
    return [ax for ax in fig.axes if ax.axison and getattr(ax, "_colorbar", None) is None]


def check_readable(fig, name, monkeypatch):
    """Assert the four readability rules on ``fig``, naming ``name`` and the offending texts."""
    width, _ = fig.get_size_inches()
    assert width <= BOOK_WIDTH_IN * 1.005, f"{name}: {width:.2f} in wide, more than {BOOK_WIDTH_IN} in"
    texts = _drawn_texts(fig, monkeypatch)
    small = [
        (t, s.get_fontsize())
        for s, t, _, _ in texts
        if s.get_fontsize() * BOOK_WIDTH_IN / width < MIN_FONT_PT
    ]
    assert not small, f"{name}: texts below {MIN_FONT_PT} pt at the book width: {small[:6]}"
    clashes = [
        (texts[i][1], texts[j][1])
        for i in range(len(texts))
        for j in range(i + 1, len(texts))
        if _overlap(texts[i][2], texts[j][2])
    ]
    assert not clashes, f"{name}: overlapping texts {clashes[:6]}"
    spilled = [t for s, t, box, own in texts if s.get_bbox_patch() is not None and not _inside(own, box)]
    assert not spilled, f"{name}: texts outside their boxes {spilled[:6]}"
    unlabelled = [
        (ax.get_title() or repr(ax), ax.get_xlabel(), ax.get_ylabel())
        for ax in _data_axes(fig)
        if not (ax.get_xlabel().strip() and ax.get_ylabel().strip())
    ]
    assert not unlabelled, f"{name}: panels without an x or y label (title, x, y): {unlabelled}"
    boxes = [ax.get_position() for ax in _data_axes(fig)]
    for box in boxes:
        in_row = [b for b in boxes if b.y0 < (box.y0 + box.y1) / 2 < b.y1]
        assert len(in_row) <= 2, f"{name}: {len(in_row)} panels in one row"


def _inside(inner, outer):
    return (
        inner.x0 >= outer.x0 - TOLERANCE_PX
        and inner.x1 <= outer.x1 + TOLERANCE_PX
        and inner.y0 >= outer.y0 - TOLERANCE_PX
        and inner.y1 <= outer.y1 + TOLERANCE_PX
    )


def _figure(result):
    """The Figure of whatever a figure function returned (a Figure, Axes or a sequence of Axes)."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], matplotlib.figure.Figure):
        return result[0]
    if isinstance(result, matplotlib.figure.Figure):
        return result
    first = (
        np.ravel(np.asarray(result, dtype=object))[0]
        if isinstance(result, list | tuple | np.ndarray)
        else result
    )
    return first.figure


# ---------------------------------------------------------------------------------- the inputs
def tan_wcs(ny=30, nx=30):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [24.174, 15.783]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.cd = np.array([[-0.2 / 3600.0, 0.0], [0.0, 0.2 / 3600.0]])
    return w


def _dataset(n=200, seed=1):
    rng = np.random.default_rng(seed)
    n_bins = AGE_BINS_YR.size - 1
    wave = np.linspace(4750.0, 9350.0, 400)
    sfh = rng.dirichlet(np.full(n_bins, 0.5), n)
    spectra = 1.0 + 0.1 * rng.standard_normal((n, wave.size))
    spectra[0, 200:203] = 300.0  # a young spectrum's emission lines
    return {
        "family": np.where(rng.random(n) < 0.5, "dense", "skewnormal"),
        "mw_log_age": rng.uniform(7.0, 10.0, n),
        "lw_log_age": rng.uniform(6.5, 10.0, n),
        "mw_zh": rng.uniform(-1.5, 0.3, n),
        "age_bins_yr": AGE_BINS_YR,
        "sfh": sfh,
        "tau_bc": rng.uniform(0, 2, n),
        "tau_ism": rng.uniform(0, 1, n),
        "snr": rng.uniform(10, 100, n),
        "wave_aa": wave,
        "spectra": spectra,
    }


def _prediction(n=3, seed=2):
    rng = np.random.default_rng(seed)
    n_bins = AGE_BINS_YR.size - 1
    sfh = rng.dirichlet(np.ones(n_bins), n)
    return {
        "sfh": sfh,
        "sfh_cum": np.cumsum(sfh, axis=1),
        "sfh_cum_sigma": np.full((n, n_bins), 0.05),
        "zh": rng.uniform(-1, 0.2, (n, n_bins)),
        "zh_sigma": np.full((n, n_bins), 0.1),
    }


def _spectra_tables():
    """A predict_spectra table of two spectra and ppxf_spectra's table beside it."""
    from astropy.table import Table

    pred = _prediction(2)
    table = Table({"name": ["spec-0945-52652-0470", "MaNGA test spectrum 3"], **pred})
    table["mw_log_age"], table["mw_log_age_err"] = [9.9, 9.2], [0.05, 0.1]
    table["mw_zh"], table["mw_zh_err"] = [0.05, -0.3], [0.04, 0.08]
    table.meta["age_bins_yr"] = list(AGE_BINS_YR)
    ppxf = Table({"ppxf_sfh": _prediction(2, seed=5)["sfh"], "ppxf_mw_log_age": [9.95, 9.4]})
    ppxf["ppxf_mw_zh"] = [0.02, -0.6]
    return table, ppxf


def _world_stats():
    from sfh_ml.synthesis import TEST_WORLDS

    rng = np.random.default_rng(4)
    stats = {w: {k: float(rng.uniform(-0.1, 0.3)) for k in ("age_bias", "age_nmad", "zh_bias", "zh_nmad")}
             for w in TEST_WORLDS}  # fmt: skip
    trust = {
        w: {"hit_rate": float(rng.uniform(0.5, 1)), "false_alarm": float(rng.uniform(0, 0.3))}
        for w in TEST_WORLDS
    }
    return stats, trust


def _score_rows():
    from sfh_ml.fitting import compare

    rows = []
    rng = np.random.default_rng(3)
    for method in ("pPXF", "pPXF + HST", "network (shipped)"):
        for snr in ("10", "50"):
            for sample in ("all", "young", "old"):
                cells = [(q, "exact") for q in ("mw_log_age", "mw_zh", "lw_log_age", "lw_zh")]
                cells += [("cum_sfh_mae", "object")]
                cells += [(f"sfh_cum_{k:02d}", "bin") for k in range(AGE_BINS_YR.size - 1)]
                cells += [(f"sfh_bin_{k:02d}", "bin") for k in range(AGE_BINS_YR.size - 1)]
                for quantity, level in cells:
                    row = {c: None for c in compare.COLUMNS}
                    row.update(method=method, snr=snr, sample=sample, quantity=quantity, level=level, n=4)
                    row["n_failed"] = 0
                    for stat in ("bias", "nmad", "std", "mae"):
                        row[stat] = float(rng.uniform(0.01, 0.3))
                    rows.append(row)
    return rows


def _comparisons():
    def metrics(scale):
        quantities = ("mw_log_age", "lw_log_age", "mw_zh", "lw_zh")
        stats = {s: {"nmad": scale / s**0.5, "bias": 0.01, "std": 0.2} for s in (10.0, 20.0, 50.0)}
        return [
            {"label": f"S/N {s:g}", "snr": [s, s], "bin": dict.fromkeys(quantities, st)}
            for s, st in stats.items()
        ]

    history = [
        {"epoch": e, "val_loss": 1.0 / (e + 1), "val_sfh_cum_mae": 0.1, "val_zh_mae": 0.2} for e in range(3)
    ]
    nets = {"v1": {"version": "v1", "n_train": 40000, "history": history, "metrics": metrics(1.0)}}
    for n in (10000, 40000):
        nets[f"v2_n{n}"] = {
            "version": "v2",
            "n_train": n,
            "history": history,
            "metrics": metrics(3e2 / n**0.5),
        }
    # a reference network of another name than the shipped one: the shipped is drawn beside it too
    ablation = {"rows": [{"snr": s, "sample": "all", "without_photometry": {"mw_log_age": 0.2, "mw_zh": 0.05}}
                         for s in (10.0, 20.0, 50.0)]}  # fmt: skip
    reference = {"name": "v0", "n_train": 165000, "metrics": metrics(0.5), "ablation": ablation}
    return {"networks": nets, "reference": reference}


def _history(n=6):
    return [
        {
            "epoch": e,
            "loss": 2.0 / (e + 1),
            "val_loss": 2.2 / (e + 1),
            "sfh_cum_mae": 0.1 / (e + 1),
            "val_sfh_cum_mae": 0.12 / (e + 1),
            "zh_mae": 0.3 / (e + 1),
            "val_zh_mae": 0.33 / (e + 1),
        }
        for e in range(n)
    ]


def _gradient():
    from sfh_ml.observations import fit_gradient

    rng = np.random.default_rng(4)
    r = rng.uniform(0.0, 30.0, 80)
    v = 0.1 - 0.01 * r + 0.05 * rng.standard_normal(80)
    fit = fit_gradient(r, v)
    return dict(
        radius=r,
        recovered=v,
        true=v + 0.01,
        recovered_err=np.full(80, 0.05),
        fit_recovered=fit,
        fit_true=fit,
        ylabel="mass-weighted [M/H] (dex)",
    )


def _batch(family="skew"):
    from sfh_ml.synthesis import DenseBasis, SkewNormalBurst

    rng = np.random.default_rng(5)
    return (SkewNormalBurst() if family == "skew" else DenseBasis(n_tx=3, alpha=1.0)).sample(8, rng)


def _synthesis(synth):
    from sfh_ml.synthesis import SkewNormalBurst

    population = SkewNormalBurst().sample(1, np.random.default_rng(6))
    params = make_params(1, tau_bc=1.0, tau_ism=0.3, snr=50.0, snr_phot=20.0)
    out = synth(population, params, np.random.default_rng(7), components=True)
    wave_full, flux_full = synth.full_spectrum(population, params)
    return population, params, out, wave_full, flux_full


def _regions():
    row = dict(
        sfh_cum=np.linspace(0.1, 1.0, 8),
        sfh_cum_sigma=np.full(8, 0.05),
        zh=np.zeros(8),
        zh_sigma=np.full(8, 0.1),
    )
    return {
        'centre: R = 1.2", S/N 40': row,
        'arm: R = 10.5", S/N 25': row,
        'outskirts: R = 30.1", S/N 12': row,
    }


def _real_check():
    rng = np.random.default_rng(8)
    return {
        "usable": np.array([True, True, True, False]),
        "snr": np.array([20.0, 40.0, 80.0, 5.0]),
        "ppxf_mw_log_age": np.array([9.0, 9.6, 10.0, 8.0]),
        "network_mw_log_age": np.array([9.1, 9.5, 9.9, 8.5]) + 0.01 * rng.standard_normal(4),
        "ppxf_mw_zh": np.array([-0.5, -0.1, 0.1, -1.0]),
        "network_mw_zh": np.array([-0.4, -0.2, 0.15, -0.8]),
    }


def _tiny_model(version):
    pytest.importorskip("keras")
    wave = np.linspace(4750.0, 9350.0, 200)
    n_bins = AGE_BINS_YR.size - 1
    return build_tiny(version, wave.size, 5, n_bins, wave_aa=wave, age_bins_yr=AGE_BINS_YR, filters=None)


def _sky(name):
    w = tan_wcs()
    image = np.add.outer(np.arange(30.0), np.arange(30.0))
    if name == "plot_sky_map":
        return pl.plot_sky_map(
            image, w, label="mean flux (cube unit)", marks={"centre": (14.5, 14.5)}, title="continuum"
        )
    if name == "plot_sky_maps":
        images = {
            "continuum": dict(image=image, label="flux (cube unit)"),
            "S/N per pixel": dict(image=-image, label="S/N"),
            "velocity": dict(image=image, label="V (km/s)", cmap="RdBu_r"),
        }
        return pl.plot_sky_maps(images, w, ncols=4, panel_size=(3.8, 3.4))
    bin_id = np.repeat(np.arange(450), 2).reshape(30, 30)
    return pl.plot_bin_map(bin_id, w, centres=(np.arange(450) % 30, np.arange(450) // 15))


# Figure function -> a call of it on small inputs (``library`` and ``synth``: the conftest fixtures).
CASES = {
    "plot_sfh_family": lambda lib, synth: pl.plot_sfh_family(_batch(), title="skewed normal + burst"),
    "plot_binned_histories": lambda lib, synth: pl.plot_binned_histories(_batch("dense"), AGE_BINS_YR),
    "plot_ssp_library": lambda lib, synth: pl.plot_ssp_library(lib),
    "plot_surviving_mass": lambda lib, synth: pl.plot_surviving_mass(lib),
    "plot_seam": lambda lib, synth: pl.plot_seam(lib),
    "plot_young_sequence": lambda lib, synth: pl.plot_young_sequence(lib),
    "plot_spectrum_components": lambda lib, synth: pl.plot_spectrum_components(
        synth.wave_aa, _synthesis(synth)[2], zoom_aa=(6450, 6800)
    ),
    "plot_broadening": lambda lib, synth: pl.plot_broadening(
        *(lambda s: (s[3], s[4][0], synth.wave_aa, s[2]["spectra_noiseless"][0]))(_synthesis(synth)),
        wave_range=(5120, 5300),
        lsf_fwhm_aa=muse_lsf_fwhm(synth.wave_aa),
        title="Mg b and Fe lines",
    ),
    "plot_photometry": lambda lib, synth: (
        lambda s: pl.plot_photometry(
            s[3],
            s[4][0],
            __import__("sfh_ml").synthesis.pivot_wavelengths(),
            s[2]["photometry_noiseless"][0],
            __import__("sfh_ml").synthesis.PHANGS_FILTERS,
        )
    )(_synthesis(synth)),
    "plot_noise": lambda lib, synth: (
        lambda s: pl.plot_noise(
            synth.wave_aa,
            s[2]["spectra_noiseless"][0],
            [
                s[2]["spectra_noiseless"][0]
                * (1 + np.random.default_rng(k).standard_normal(synth.wave_aa.size) / snr)
                for k, snr in enumerate((5.0, 20.0, 100.0))
            ],
            [5.0, 20.0, 100.0],
        )
    )(_synthesis(synth)),
    "plot_dataset_overview": lambda lib, synth: pl.plot_dataset_overview(_dataset()),
    "plot_spectra_by_age": lambda lib, synth: pl.plot_spectra_by_age(_dataset()),
    "plot_architecture": lambda lib, synth: pl.plot_architecture(_tiny_model("v2")),
    "plot_history": lambda lib, synth: pl.plot_history(_history()),
    "plot_training_history": lambda lib, synth: pl.plot_training_history(_history()),
    "plot_validation_curves": lambda lib, synth: pl.plot_validation_curves(
        {"v2": _history(), "v1": _history(4)}, "val_sfh_cum_mae", ylabel="validation cumulative-SFH error"
    ),
    "plot_recovery": lambda lib, synth: (
        lambda d, p: pl.plot_recovery(
            d["wave_aa"],
            np.abs(d["spectra"][1]) + 0.5,
            np.array([2700.0, 3350, 4300, 5300, 8000]),
            np.ones(5),
            AGE_BINS_YR,
            d["sfh"][1],
            np.zeros(8),
            p,
            index=1,
        )
    )(_dataset(), _prediction()),
    "plot_one_to_one": lambda lib, synth: (
        lambda r: pl.plot_one_to_one(
            r, r + 0.1 * np.random.default_rng(1).standard_normal(r.size), "mass-weighted log age"
        )
    )(np.random.default_rng(0).uniform(7, 10, 500)),
    "plot_per_bin_error": lambda lib, synth: pl.plot_per_bin_error(
        AGE_BINS_YR,
        {"v2": np.linspace(0.1, 0.02, 8), "v1": np.linspace(0.12, 0.03, 8)},
        "MAE of mass fraction",
    ),
    "plot_scatter_by_group": lambda lib, synth: (lambda ev: pl.plot_scatter_by_group({"v2": ev, "v1": ev}))(
        __import__("sfh_ml.network.metrics", fromlist=["x"]).evaluate_predictions(
            _prediction(300),
            {"sfh": _prediction(300, seed=9)["sfh"], "zh": _prediction(300, seed=9)["zh"]},
            AGE_BINS_YR,
            snr=np.random.default_rng(1).uniform(5, 200, 300),
        )
    ),
    "plot_learning_curve": lambda lib, synth: pl.plot_learning_curve(
        np.array([300, 3000, 30000]),
        {"log age": np.array([0.3, 0.2, 0.12]), "[M/H]": np.array([0.2, 0.1, 0.06])},
        ylabel="scatter at S/N = 50 (dex)",
    ),
    "plot_coverage": lambda lib, synth: pl.plot_coverage(
        np.linspace(0.1, 0.99, 20),
        [np.linspace(0.1, 0.99, 20) ** 1.1, np.linspace(0.1, 0.99, 20) ** 0.9],
        ["cumulative SFH", "[M/H] (mass-weighted)"],
    ),
    "plot_release_comparison": lambda lib, synth: pl.plot_release_comparison(_comparisons(), RESULTS),
    "plot_release_learning_curve": lambda lib, synth: pl.plot_release_learning_curve(_comparisons(), RESULTS),
    "plot_sky_map": lambda lib, synth: _sky("plot_sky_map"),
    "plot_sky_maps": lambda lib, synth: _sky("plot_sky_maps"),
    "plot_bin_map": lambda lib, synth: _sky("plot_bin_map"),
    "plot_cube_spectrum": lambda lib, synth: pl.plot_cube_spectrum(
        np.linspace(4750.0, 9350.0, 500),
        np.ones(500),
        np.full(500, 0.01),
        label="brightest spaxel",
        sky_windows_aa=[(5572, 5583)],
        redshift=0.003,
        flux_unit="1e-20 erg/s/cm2/Å",
    ),
    "plot_radial_gradient": lambda lib, synth: pl.plot_radial_gradient(**_gradient()),
    "plot_cluster_ages": lambda lib, synth: pl.plot_cluster_ages(
        [2.0, 100.0, 1000.0, 30.0],
        [3.0, 90.0, np.nan, 50.0],
        [0.1, 0.2, 0.3, 0.1],
        usable=[True, False, True, True],
    ),
    "plot_region_histories": lambda lib, synth: pl.plot_region_histories(AGE_BINS_YR, _regions()),
    "plot_spectra_predictions": lambda lib, synth: pl.plot_spectra_predictions(*_spectra_tables()),
    "plot_regul_choice": lambda lib, synth: pl.plot_regul_choice(
        np.array([1.0, 3.0, 10.0, 30.0]),
        np.array([[1.0, 20.0, 300.0, 900], [2.0, 30.0, 400.0, 1000]]),
        80.0,
        3.0,
    ),
    "plot_method_histories": lambda lib, synth: pl.plot_method_histories(
        AGE_BINS_YR,
        _prediction()["sfh"][0],
        np.full(8, -0.3),
        {
            "pPXF": {"sfh": _prediction()["sfh"][1], "zh": np.zeros(8)},
            "network": {k: v[2] for k, v in _prediction().items()},
        },
    ),
    "plot_accuracy_vs_snr": lambda lib, synth: pl.plot_accuracy_vs_snr(_score_rows()),
    "plot_per_bin_by_method": lambda lib, synth: pl.plot_per_bin_by_method(
        _score_rows(), AGE_BINS_YR, ["10", "50"]
    ),
    "plot_young_old": lambda lib, synth: pl.plot_young_old(_score_rows(), 50),
    "plot_speed": lambda lib, synth: pl.plot_speed(
        {"pPXF": 1.8, "pPXF + HST": 2.4, "network": 0.0018}, workers={"pPXF": 16, "pPXF + HST": 16}
    ),
    "plot_valley": lambda lib, synth: pl.plot_valley({"E-MILES": _score_rows(), "BC03": _score_rows()}, 50),
    "plot_worlds": lambda lib, synth: pl.plot_worlds(*_world_stats()),
    "plot_real_spectra_check": lambda lib, synth: pl.plot_real_spectra_check(_real_check()),
    "plot_card_metrics": lambda lib, synth: pl.plot_card_metrics(RESULTS),
    "plot_card_coverage": lambda lib, synth: pl.plot_card_coverage(RESULTS),
    "plot_card_valley": lambda lib, synth: pl.plot_card_valley(RESULTS),
    "plot_card_training": lambda lib, synth: pl.plot_card_training(_with_history(RESULTS)),
}


def _with_history(results):
    """The shipped results with a training curve of 40 epochs (v2's release predates the record)."""
    rows = [(0.2 * 0.97**e + 0.05, 0.22 * 0.96**e + 0.05, 1e-3 * 0.5 ** (e // 8)) for e in range(40)]
    keys = ("val_point_error", "point_error", "learning_rate")
    curve = [{"epoch": e, "val_loss": -4.0, **dict(zip(keys, r))} for e, r in enumerate(rows)]
    training = {**results["training"], "history": curve, "best_epoch": [33]}
    return {**results, "training": training}


def test_every_figure_function_has_a_case():
    functions = {name for name in pl.__all__ if name.startswith("plot_")}
    assert functions == set(CASES), (
        f"without a case: {functions - set(CASES)}; unknown: {set(CASES) - functions}"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_figure_is_readable_at_the_book_width(name, library, synth, monkeypatch):
    check_readable(_figure(CASES[name](library, synth)), name, monkeypatch)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_architecture_diagram_of_each_version_is_readable(version, monkeypatch):
    check_readable(
        pl.plot_architecture(_tiny_model(version)).figure, f"plot_architecture({version})", monkeypatch
    )


@pytest.mark.parametrize("state", [False, True])
def test_the_book_style_keeps_the_interactive_mode_that_a_lazy_backend_set(state):
    # IPython activates a notebook's inline backend on the first figure, inside the book style's
    # context, and turns interactive mode on: restoring it to off hid every later figure of chapter 2
    before = matplotlib.is_interactive()
    try:
        matplotlib.interactive(not state)
        with pl.book_style():
            matplotlib.interactive(state)
        assert matplotlib.is_interactive() is state
        outside = list(plt.rcParams["figure.figsize"])
        with pl.book_style():  # every other setting is the book's inside and restored after
            assert plt.rcParams["figure.figsize"][0] == BOOK_WIDTH_IN
        assert list(plt.rcParams["figure.figsize"]) == outside
    finally:
        matplotlib.interactive(before)
