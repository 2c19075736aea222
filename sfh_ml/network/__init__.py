"""Parts 2 and 3 of the book: the networks, their training, inference and validation.

* :mod:`~sfh_ml.network.layers`: input normalisation, position embedding, output head;
* :mod:`~sfh_ml.network.losses`: Gaussian NLL losses and point-error metrics;
* :mod:`~sfh_ml.network.architectures`: v1 (four branches) and v2 (attention, one decoder);
* :mod:`~sfh_ml.network.metadata`: the grids a model was trained for, and the check against data;
* :mod:`~sfh_ml.network.loading`: ``load_model`` (a saved network) and ``load_data`` (a labelled
  training set), read alike by training and inference;
* :mod:`~sfh_ml.network.training`: data feeding, augmentation, resumable training;
* :mod:`~sfh_ml.network.inference`: ``predict`` (with a quality flag per object), ``evaluate``,
  ``predict_file``;
* :mod:`~sfh_ml.network.calibration`: ``calibrate``, the sigma factors fitted on a held-out set, and
  ``calibrate_ood``, the thresholds of the out-of-distribution flag; ``calibrate_trust``, the
  trust score's parameters;
* :mod:`~sfh_ml.network.goodness`: ``resynthesis_fit``, each prediction re-synthesised and scored
  against the data, the out-of-distribution flag of ``predict(..., goodness=True)``;
* :mod:`~sfh_ml.network.trust`: the trust score (is this answer right?) and the wrong-redshift check
  of ``predict(..., trust=True)``;
* :mod:`~sfh_ml.network.metrics`: accuracy against synthetic truth (pure numpy);
* :mod:`~sfh_ml.network.pretrained`: ``load_pretrained``, the network that ships in ``sfh_ml/pretrained/``
  (digests checked on load); :mod:`~sfh_ml.network.card`: its model card.

The names are imported on first use: ``sfh_ml.network.metrics`` (pure numpy) loads without Keras, and
Keras starts only when a network name is used. :func:`load_model` registers the custom layers
before loading, so saved models load without ``custom_objects``.
"""

from .._lazy import lazy_exports

# Public name -> the submodule that defines it.
_EXPORTS = {
    **dict.fromkeys(("DEFAULT_HYPER", "VERSIONS", "adapt", "build_model", "compile_model"), "architectures"),
    **dict.fromkeys(
        (
            "INTERVAL_KEYS",
            "PREDICTION_KEYS",
            "NoUsableObjectError",
            "evaluate",
            "predict",
            "predict_file",
        ),
        "inference",
    ),
    **dict.fromkeys(("ModelFileError", "load_data", "load_model"), "loading"),
    **dict.fromkeys(
        (
            "QUALITY_FLAGS",
            "QUALITY_NO_NOISE",
            "QUALITY_OUT_OF_DISTRIBUTION",
            "QUALITY_UNTRUSTED",
            "QUALITY_UNUSABLE",
            "QUALITY_WRONG_REDSHIFT",
        ),
        "quality",
    ),
    **dict.fromkeys(
        ("fit_trust", "redshift_offset", "trust_features", "trust_rates", "trust_score", "wrong_redshift"),
        "trust",
    ),
    **dict.fromkeys(("calibrate", "calibrate_ood", "calibrate_trust", "sigma_scale_factors"), "calibration"),
    **dict.fromkeys(
        ("GOODNESS_KEYS", "BinnedHistory", "fit_ood_thresholds", "ood_threshold", "resynthesis_fit"),
        "goodness",
    ),
    **dict.fromkeys(
        (
            "PretrainedError",
            "comparisons_reference",
            "load_pretrained",
            "pretrained_card",
            "pretrained_comparisons",
            "pretrained_info",
            "pretrained_results",
            "write_manifest",
        ),
        "pretrained",
    ),
    **dict.fromkeys(("render_model_card",), "card"),
    **dict.fromkeys(("HistoryHead", "InputNormalization", "PositionEmbedding"), "layers"),
    **dict.fromkeys(("SFHLoss", "ZHLoss", "make_targets", "sfh_cum_mae", "zh_mae"), "losses"),
    **dict.fromkeys(("check_compatible", "get_metadata"), "metadata"),
    **dict.fromkeys(
        (
            "HistoryDataset",
            "TrainingError",
            "TrainingResult",
            "augment_batch",
            "split_indices",
            "train",
        ),
        "training",
    ),
}
__all__ = ["metrics", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(
    __name__, {"metrics": ".metrics", **{k: f".{v}" for k, v in _EXPORTS.items()}}
)
