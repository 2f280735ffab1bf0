import json

import numpy as np
import pytest

from zoo.artifacts import (
    atomic_path,
    card_identity,
    card_sha256,
    load_npy,
    read_card,
    safe_join,
    update_card,
    write_card,
    write_npy,
)
from zoo.errors import ZooError

CARD = {"kind": "member", "name": "x", "classes": ["a", "b"], "input": {"image_size": 8}}


def make(folder):
    write_npy(folder / "probs" / "val.npy", np.eye(2, dtype=np.float32))
    (folder / "model.bin").write_bytes(b"weights")
    return write_card(folder, CARD)


def test_card_round_trip_hashes_every_file(tmp_path):
    card = make(tmp_path)
    assert set(card["files"]) == {"model.bin", "probs/val.npy"}
    assert card["schema"] == 1 and "environment" in card and "created" in card
    assert read_card(tmp_path)["files"] == card["files"]
    assert len(card_sha256(tmp_path)) == 64


def test_identity_ignores_what_evaluation_adds_and_nothing_else(tmp_path):
    make(tmp_path)
    identity, sha = card_identity(read_card(tmp_path)), card_sha256(tmp_path)
    write_npy(tmp_path / "probs" / "val.npy", np.eye(2, dtype=np.float32)[::-1])  # predicted again
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "shift_suite.json").write_text("{}")
    update_card(tmp_path, verify=False, metrics={"val": {"accuracy": 0.5}})
    assert card_sha256(tmp_path) != sha and card_identity(read_card(tmp_path)) == identity
    (tmp_path / "model.bin").write_bytes(b"retrained")
    update_card(tmp_path, verify=False)
    assert card_identity(read_card(tmp_path)) != identity
    retrained = card_identity(read_card(tmp_path))
    update_card(tmp_path, verify=False, params={"widths": [8]})  # any other field of the card
    assert card_identity(read_card(tmp_path)) != retrained


def test_incomplete_folder_is_refused(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"w")
    with pytest.raises(ZooError, match="incomplete"):
        read_card(tmp_path)


def test_tampered_or_missing_file_is_refused(tmp_path):
    make(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"evil")
    with pytest.raises(ZooError, match="model.bin.*modified"):
        read_card(tmp_path)
    (tmp_path / "model.bin").unlink()
    with pytest.raises(ZooError, match="missing"):
        read_card(tmp_path)


def test_schema_and_required_keys_are_validated(tmp_path):
    make(tmp_path)
    card = json.loads((tmp_path / "card.json").read_text())
    card["schema"] = 99
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ZooError, match="schema 99"):
        read_card(tmp_path)
    card["schema"] = 1
    del card["classes"]
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ZooError, match="missing key"):
        read_card(tmp_path)


def test_paths_in_cards_cannot_escape(tmp_path):
    make(tmp_path)
    card = json.loads((tmp_path / "card.json").read_text())
    card["files"]["../../etc/passwd"] = "0" * 64
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ZooError, match="escapes"):
        read_card(tmp_path)
    with pytest.raises(ZooError, match="relative"):
        safe_join(tmp_path, "/etc/passwd")


def test_update_card_merges_and_rehashes(tmp_path):
    make(tmp_path)
    write_npy(tmp_path / "probs" / "test.npy", np.zeros((1, 2), np.float32))
    card = update_card(tmp_path, metrics={"val": {"accuracy": 1.0}})
    assert card["metrics"]["val"]["accuracy"] == 1.0
    assert "probs/test.npy" in read_card(tmp_path)["files"]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_pickled_arrays_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ZooError, match="not a plain numeric array"):
        load_npy(tmp_path / "obj.npy")


def test_parameter_count_reads_new_and_old_cards():
    from zoo.artifacts import parameter_count

    assert parameter_count({"parameter_count": 12, "params": {"dropout": 0.3}}) == 12
    assert parameter_count({"parameters": 34}) == 34  # cards written before the rename
    assert parameter_count({"params": {}}) is None
