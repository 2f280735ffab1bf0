import numpy as np
import pytest

from zoo.confusions import confused_pairs, error_summary, predicted_classes
from zoo.errors import ZooError


def test_confused_pairs_counts_both_directions_of_each_pair():
    names = ["a", "b", "c"]
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    pred = np.array([1, 0, 0, 2, 1, 1, 2, 0])  # a->b, b->a, b->c, c->b; 4 errors
    r = confused_pairs(pred, labels, names)
    assert r["errors"] == 4
    assert r["pairs"] == [  # two pairs of 2, in class order
        {"pair": ["a", "b"], "count": 2, "a_as_b": 1, "b_as_a": 1},
        {"pair": ["b", "c"], "count": 2, "a_as_b": 1, "b_as_a": 1},
    ]
    assert r["by_class"] == {"a": 2, "b": 4, "c": 2}  # b takes part in every error
    probs = np.eye(3)[np.array([2, 0, 1, 1, 1, 2, 2, 0])]  # probabilities too: one error, a read as c
    r = confused_pairs(probs, labels, names)
    assert r["errors"] == 1 and r["pairs"] == [{"pair": ["a", "c"], "count": 1, "a_as_b": 1, "b_as_a": 0}]
    assert confused_pairs(labels, labels, names) == {"errors": 0, "pairs": [], "by_class": {"a": 0, "b": 0, "c": 0}}
    with pytest.raises(ZooError):
        confused_pairs(pred, labels, names[:2])


def test_error_summary_pools_the_models_errors_by_class_and_renders_one_row_each():
    from ensemble.compare import error_lines

    names = ["a", "b", "c"]
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    one = confused_pairs(np.array([1, 0, 0, 2, 1, 1, 2, 0]), labels, names)  # a->b, b->a, b->c, c->b
    two = confused_pairs(np.array([2, 0, 1, 1, 1, 2, 2, 0]), labels, names)  # a->c
    s = error_summary({"one": one, "two": two})
    # pooled a 2+1, b 4+0, c 2+1 of 4+1 errors: b takes part in the most, 4 of 5
    assert s["class"] == "b" and s["class_share"] == pytest.approx(4 / 5)
    assert s["rows"]["one"]["with_class"] == 4 and s["rows"]["two"]["with_class"] == 0
    lines = error_lines(s, "## errors")
    assert "| one | 4 | 4 | a ↔ b 2 (1 / 1); b ↔ c 2 (1 / 1) |" in lines
    assert "| two | 1 | 0 | a ↔ c 1 (1 / 0) |" in lines and "with `b`" in "\n".join(lines)
    assert error_summary({"two": two})["class"] == "a"  # a and c alike: the first in class order
    perfect = confused_pairs(labels, labels, names)
    assert error_summary({"p": perfect})["class_share"] == 0.0
    with pytest.raises(ZooError):
        error_summary({})


def test_predicted_classes_take_probabilities_or_indices_and_refuse_mismatches():
    labels = np.array([0, 2, 1])
    np.testing.assert_array_equal(predicted_classes(np.eye(3)[[1, 2, 1]], labels)[0], [1, 2, 1])
    np.testing.assert_array_equal(predicted_classes(np.array([1, 2, 1]), labels)[0], [1, 2, 1])
    for bad in (np.array([1, 2]), np.eye(3)[[1, 2]]):
        with pytest.raises(ZooError, match="do not match"):
            predicted_classes(bad, labels)


def test_top_pairs_names_both_directions_of_the_most_confused_pairs():
    from zoo.confusions import top_pairs

    r = confused_pairs(np.array([1, 1, 0, 2, 1]), np.array([0, 0, 1, 1, 1]), ["a", "b", "c"])
    assert top_pairs(r) == "a ↔ b 3 (2 / 1); b ↔ c 1 (1 / 0)"
    assert top_pairs(r, 1) == "a ↔ b 3 (2 / 1)" and top_pairs(confused_pairs([0], [0], ["a"])) == ""
