"""Ensembles of zoo members: weighted soft voting, stacking, temperature scaling, TTA, distillation.

Public API: :func:`load` (a verified ensemble folder), :func:`predict_proba` (run the Keras
members on images and combine), :func:`build_ensemble` (write a folder from member runs) and
:func:`combine` (the documented math on member probabilities). This package never trains
members; :mod:`ensemble.distill` trains only a student.
"""

from ensemble.build import EnsembleConfig, build_ensemble
from ensemble.combine import combine
from ensemble.folder import Ensemble, load, predict_proba
from zoo import predictors as _predictors

__all__ = ["Ensemble", "EnsembleConfig", "build_ensemble", "combine", "load", "predict_proba"]


def _predictor(folder, card):
    ens = load(folder)
    return ens.predict_proba


# `zoo evaluate ENSEMBLE` and the shift suite find ensembles through the core's registry.
_predictors.register("ensemble", _predictor)
