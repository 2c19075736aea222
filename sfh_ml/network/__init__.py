"""Parts 2 and 3 of the book: the networks, their training, inference and validation.

* :mod:`~sfh_ml.network.layers`: input normalisation, position embedding, output head;
* :mod:`~sfh_ml.network.losses`: Gaussian NLL losses and point-error metrics;
* :mod:`~sfh_ml.network.architectures`: v1 (four branches) and v2 (attention, one decoder);
* :mod:`~sfh_ml.network.metadata`: the grids a model was trained for, and the check against data;
* :mod:`~sfh_ml.network.training`: data feeding, augmentation, resumable training;
* :mod:`~sfh_ml.network.inference`: ``load_model``, ``predict`` (with a quality flag per object),
  ``evaluate``, ``predict_file``;
* :mod:`~sfh_ml.network.metrics`: accuracy against synthetic truth (pure numpy).

Importing this package imports Keras and registers the custom layers, so that saved models load.
"""

from . import metrics
from .architectures import DEFAULT_HYPER, VERSIONS, adapt, build_model, compile_model
from .inference import (
    PREDICTION_KEYS,
    QUALITY_FLAGS,
    QUALITY_UNUSABLE,
    ModelFileError,
    NoUsableObjectError,
    evaluate,
    load_model,
    predict,
    predict_file,
)
from .layers import HistoryHead, InputNormalization, PositionEmbedding
from .losses import SFHLoss, ZHLoss, make_targets, sfh_cum_mae, zh_mae
from .metadata import check_compatible, get_metadata
from .training import (
    HistoryDataset,
    TrainingError,
    TrainingResult,
    augment_batch,
    load_data,
    split_indices,
    train,
)

__all__ = [
    "metrics",
    "DEFAULT_HYPER",
    "VERSIONS",
    "adapt",
    "build_model",
    "compile_model",
    "PREDICTION_KEYS",
    "QUALITY_FLAGS",
    "QUALITY_UNUSABLE",
    "ModelFileError",
    "NoUsableObjectError",
    "evaluate",
    "load_model",
    "predict",
    "predict_file",
    "HistoryHead",
    "InputNormalization",
    "PositionEmbedding",
    "SFHLoss",
    "ZHLoss",
    "make_targets",
    "sfh_cum_mae",
    "zh_mae",
    "check_compatible",
    "get_metadata",
    "HistoryDataset",
    "TrainingResult",
    "TrainingError",
    "augment_batch",
    "load_data",
    "split_indices",
    "train",
]
