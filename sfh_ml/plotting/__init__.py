"""Every figure of the book, one module per chapter: :mod:`~sfh_ml.plotting.synthesis` (chapter 1),
:mod:`~sfh_ml.plotting.training` (2), :mod:`~sfh_ml.plotting.validation` (3),
:mod:`~sfh_ml.plotting.application` (4), :mod:`~sfh_ml.plotting.comparison` (5) and
:mod:`~sfh_ml.plotting.model_card`; :mod:`~sfh_ml.plotting.style` holds the book style.

Each figure function draws in the book style (``book.mplstyle``) on the Axes it is given, or makes
its own figure at the book width (``BOOK_WIDTH_IN``, at most two panels per row), and returns the
Axes (the figure is ``ax.figure``).
"""

from .application import (
    plot_bin_map,
    plot_cluster_ages,
    plot_cube_spectrum,
    plot_radial_gradient,
    plot_region_histories,
    plot_sky_map,
    plot_sky_maps,
    plot_spectra_predictions,
)
from .comparison import (
    SCORE_LABELS,
    STAT_LABELS,
    plot_accuracy_vs_snr,
    plot_method_histories,
    plot_per_bin_by_method,
    plot_real_spectra_check,
    plot_regul_choice,
    plot_speed,
    plot_valley,
    plot_worlds,
    plot_young_old,
)
from .model_card import plot_card_coverage, plot_card_metrics, plot_card_training, plot_card_valley
from .style import BOOK_STYLE, BOOK_WIDTH_IN, book_style, use_book_style
from .synthesis import (
    plot_binned_histories,
    plot_broadening,
    plot_dataset_overview,
    plot_noise,
    plot_photometry,
    plot_seam,
    plot_sfh_family,
    plot_spectra_by_age,
    plot_spectrum_components,
    plot_ssp_library,
    plot_surviving_mass,
    plot_young_sequence,
)
from .training import (
    SPECTRAL_PREFIXES,
    plot_architecture,
    plot_history,
    plot_training_history,
    plot_validation_curves,
)
from .validation import (
    MEAN_QUANTITY_LABELS,
    plot_coverage,
    plot_learning_curve,
    plot_one_to_one,
    plot_per_bin_error,
    plot_recovery,
    plot_release_comparison,
    plot_release_learning_curve,
    plot_scatter_by_group,
)

__all__ = [
    # style
    "BOOK_WIDTH_IN",
    "BOOK_STYLE",
    "book_style",
    "use_book_style",
    # chapter 1
    "plot_sfh_family",
    "plot_binned_histories",
    "plot_ssp_library",
    "plot_surviving_mass",
    "plot_seam",
    "plot_young_sequence",
    "plot_spectrum_components",
    "plot_broadening",
    "plot_photometry",
    "plot_noise",
    "plot_dataset_overview",
    "plot_spectra_by_age",
    # chapter 2
    "SPECTRAL_PREFIXES",
    "plot_architecture",
    "plot_history",
    "plot_training_history",
    "plot_validation_curves",
    # chapter 3
    "MEAN_QUANTITY_LABELS",
    "plot_recovery",
    "plot_one_to_one",
    "plot_per_bin_error",
    "plot_scatter_by_group",
    "plot_learning_curve",
    "plot_coverage",
    "plot_release_comparison",
    "plot_release_learning_curve",
    # chapter 4
    "plot_sky_map",
    "plot_sky_maps",
    "plot_bin_map",
    "plot_cube_spectrum",
    "plot_radial_gradient",
    "plot_cluster_ages",
    "plot_region_histories",
    "plot_spectra_predictions",
    # chapter 5
    "STAT_LABELS",
    "SCORE_LABELS",
    "plot_regul_choice",
    "plot_method_histories",
    "plot_accuracy_vs_snr",
    "plot_per_bin_by_method",
    "plot_young_old",
    "plot_speed",
    "plot_valley",
    "plot_worlds",
    "plot_real_spectra_check",
    # model card
    "plot_card_metrics",
    "plot_card_coverage",
    "plot_card_valley",
    "plot_card_training",
]
