import json
import warnings

import numpy as np
import pytest

from zoo.artifacts import read_card
from zoo.errors import ZooError
from zoo.evaluate import balanced_accuracy, compute_metrics, evaluate, expected_calibration_error, reliability_bins

NAMES = ["a", "b", "c"]


def test_a_set_with_some_classes_scores_their_mean_recall_without_a_warning():
    """A lab's set holding two of three classes, the model naming the third: mean recall over the two, quietly."""
    labels = np.array([0, 0, 0, 1, 1])
    pred = np.array([0, 0, 2, 1, 0])
    probs = np.eye(3)[pred] * 0.9 + 0.1 / 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert balanced_accuracy(labels, pred) == pytest.approx((2 / 3 + 1 / 2) / 2)
        assert compute_metrics(labels, probs, NAMES)["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    with pytest.warns(UserWarning, match="not in y_true"):  # what scikit-learn alone says on the same arrays
        from sklearn.metrics import balanced_accuracy_score

        balanced_accuracy_score(labels, pred)


def test_metrics_on_known_predictions():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]
    )
    m = compute_metrics(labels, probs, NAMES)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["per_class"]["a"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    assert m["nll"] == pytest.approx(-np.mean(np.log(probs[np.arange(6), labels])), rel=1e-6)
    assert 0.9 < m["roc_auc_ovr"] <= 1.0


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    labels = np.array([0, 1] * 50)
    calibrated = np.tile([[0.5, 0.5]], (100, 1))
    assert expected_calibration_error(labels, calibrated) == pytest.approx(0.0, abs=1e-9)
    over = np.tile([[0.99, 0.01]], (100, 1))
    assert expected_calibration_error(labels, over) == pytest.approx(0.49, abs=1e-6)


def test_reliability_bins_by_hand_and_the_ece_is_their_weighted_gap():
    # 4 bins of width 0.25; top-label confidences 0.7, 0.6 (bin 2) and 0.9, 0.95, 1.0 (bin 3: its right edge is closed)
    probs = np.array([[0.3, 0.7], [0.6, 0.4], [0.9, 0.1], [0.05, 0.95], [1.0, 0.0]])
    labels = np.array([1, 1, 0, 0, 0])
    b = reliability_bins(labels, probs, bins=4)
    assert b["edges"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert b["count"].tolist() == [0, 0, 2, 3]
    assert np.isnan(b["accuracy"][0]) and np.isnan(b["confidence"][1])
    assert b["confidence"][2:] == pytest.approx([0.65, 0.95])
    assert b["accuracy"][2:] == pytest.approx([0.5, 2 / 3])
    ece = (2 * abs(0.5 - 0.65) + 3 * abs(2 / 3 - 0.95)) / 5
    assert expected_calibration_error(labels, probs, bins=4) == pytest.approx(ece)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ZooError, match="do not match"):
        compute_metrics(np.array([0, 1]), np.ones((2, 4)) / 4, NAMES)


def test_evaluate_a_run_writes_plots_json_and_card_metrics(trained_run, synthetic_small):
    result = evaluate(trained_run, split="test", dataset=synthetic_small)
    out = trained_run / "eval" / "test"
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == pytest.approx(result["accuracy"])
    for png in ("confusion_matrix.png", "reliability.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = read_card(trained_run)
    assert card["metrics"]["test"]["accuracy"] == pytest.approx(result["accuracy"])
    assert set(result["per_class"]) == set(synthetic_small.class_names)


def test_evaluate_refuses_data_with_other_classes(trained_run, tmp_path):
    from tests.helpers import write_images

    for c in ("x", "y"):
        write_images(tmp_path / c, 4)
    with pytest.raises(ZooError, match="differ from the data"):
        evaluate(trained_run, str(tmp_path), split="val")
