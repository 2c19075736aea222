"""The library functions behind the book's choices: a binning choice as text, and quality flags as names."""

import numpy as np
import pytest

import sfh_ml
from sfh_ml.observations import flags as qf
from sfh_ml.observations import grid_bins, make_bins, no_bins, parse_bins, quality_bits, voronoi_bins


def _maps(seed=3, shape=(24, 20)):
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape)
    signal = 50.0 * np.exp(-((yy - 12) ** 2 + (xx - 10) ** 2) / 60.0) + 0.5
    noise = np.sqrt(signal) * rng.uniform(0.8, 1.2, shape)
    signal[0, :3] = np.nan  # outside the field
    noise[5, 5] = 0.0  # a dead spaxel
    return signal, noise


@pytest.mark.parametrize(
    ("text", "expected"),
    [("voronoi:30", ("voronoi", 30.0)), (" Grid:4 ", ("grid", 4)), ("none", ("none", None))],
)
def test_parse_bins_reads_the_three_forms(text, expected):
    assert parse_bins(text) == expected


@pytest.mark.parametrize("text", ["voronoi:-5", "voronoi", "grid:2.5", "grid:0", "hexagons:3", "none:2"])
def test_parse_bins_refuses_anything_else_naming_the_forms(text):
    with pytest.raises(ValueError, match="voronoi:S/N.*grid:N.*none"):
        parse_bins(text)


def test_make_bins_is_the_same_as_building_each_kind_by_hand():
    signal, noise = _maps()
    usable = np.isfinite(signal) & np.isfinite(noise) & (noise > 0)
    by_hand = {
        "voronoi:20": voronoi_bins(signal, noise, 20.0),
        "grid:3": grid_bins(signal.shape, 3, mask=usable, signal=signal, noise=noise),
        "none": no_bins(usable, signal=signal, noise=noise),
    }
    for text, expected in by_hand.items():
        bins = make_bins(signal, noise, text)
        np.testing.assert_array_equal(bins.bin_id, expected.bin_id, err_msg=text)
        np.testing.assert_allclose(bins.snr, expected.snr, err_msg=text)
        assert bins.bin_id[0, 0] == -1 and bins.bin_id[5, 5] == -1, f"{text}: unusable spaxels were binned"
    # Voronoi bins reach the target: every bin of more than one spaxel is near or above S/N 20.
    vor = make_bins(signal, noise, "voronoi:20")
    assert np.all(vor.snr[vor.n_spaxels > 1] > 0.8 * 20.0)


def test_make_bins_refuses_an_empty_cube_naming_it():
    signal = np.full((4, 4), np.nan)
    with pytest.raises(ValueError, match="cube_X.fits: no spaxel has finite flux"):
        make_bins(signal, signal, "voronoi:10", source="cube_X.fits")
    with pytest.raises(ValueError, match="same shape"):
        make_bins(np.ones((4, 4)), np.ones((4, 5)), "none")


def test_decode_quality_names_every_bit_and_round_trips():
    bits = quality_bits()
    assert len(set(bits.values())) == len(bits), "two flags share a bit"
    assert all(v & (v - 1) == 0 for v in bits.values()), "a flag is not a single bit"
    value = bits["LOW_SNR"] | bits["NETWORK_MISSING_BANDS"] | qf.NO_KINEMATICS
    assert sfh_ml.decode_quality(value) == ["NO_KINEMATICS", "LOW_SNR", "NETWORK_MISSING_BANDS"]
    assert sfh_ml.decode_quality(0) == []
    column = np.array([[0, qf.TOO_BROAD], [bits["NETWORK_OUT_OF_DISTRIBUTION"], value]])
    names = sfh_ml.decode_quality(column)
    assert names.shape == (2, 2)
    for index, value_ in np.ndenumerate(column):
        assert sum(bits[name] for name in names[index]) == value_


@pytest.mark.parametrize("bad", [-1, 1 << 30, 2.5, np.nan])
def test_decode_quality_refuses_values_no_flag_defines(bad):
    with pytest.raises(ValueError, match="quality"):
        sfh_ml.decode_quality(np.array([0, bad]))
