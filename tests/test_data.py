import json

import pytest
import torch

from resdepth import data


def test_digits_split_is_deterministic_and_stratified():
    a = data.digits_tensors(0.25, split_seed=3)
    b = data.digits_tensors(0.25, split_seed=3)
    c = data.digits_tensors(0.25, split_seed=4)
    for key in a:
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["y_test"], c["y_test"])
    assert len(a["y_train"]) + len(a["y_test"]) == 1797
    train_share = torch.bincount(a["y_train"]) / len(a["y_train"])
    test_share = torch.bincount(a["y_test"]) / len(a["y_test"])
    assert (train_share - test_share).abs().max() < 0.01


def test_digits_test_images_are_not_in_the_training_set():
    """The 1797 digits images are pairwise distinct, and standardising is one injective
    map for both splits: the splits must share no image and together hold all of them."""
    t = data.digits_tensors(0.25, split_seed=0)
    train = {image.numpy().tobytes() for image in t["x_train"]}
    test = {image.numpy().tobytes() for image in t["x_test"]}
    assert len(train) == len(t["x_train"]) and len(test) == len(t["x_test"])
    assert not train & test
    assert len(train | test) == 1797


def test_digits_standardised_with_train_statistics():
    t = data.digits_tensors(0.25, split_seed=0)
    flat = t["x_train"].reshape(len(t["x_train"]), -1)
    varying = flat.std(0) > 0
    torch.testing.assert_close(flat.mean(0), torch.zeros(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        flat[:, varying].std(0, unbiased=False), torch.ones(int(varying.sum())), atol=1e-4, rtol=0
    )
    assert torch.isfinite(t["x_test"]).all()


def test_prepared_round_trip_and_manifest(tmp_path):
    tensors = data.digits_tensors(0.25, split_seed=0)
    manifest = data.write_prepared(
        tensors, tmp_path / "d.pt", tmp_path / "d.json", name="digits", num_classes=10
    )
    assert manifest == json.loads((tmp_path / "d.json").read_text())
    assert manifest["n_train"] == 1347 and manifest["n_test"] == 450
    assert sum(manifest["test_class_counts"]) == 450
    loaded = data.load_prepared(tmp_path / "d.pt")
    assert loaded.input_shape == (8, 8) and loaded.num_classes == 10
    assert torch.equal(loaded.x_test, tensors["x_test"])


def test_tampered_tensor_file_is_rejected(tmp_path):
    data.write_prepared(
        data.digits_tensors(0.25, 0), tmp_path / "d.pt", tmp_path / "d.json", "digits", 10
    )
    with open(tmp_path / "d.pt", "ab") as f:
        f.write(b"junk")
    with pytest.raises(ValueError, match="sha256"):
        data.load_prepared(tmp_path / "d.pt")


RECALL = dict(pairs=4, keys=8, values=6, n_train=300, n_test=100)


def test_recall_is_deterministic_from_its_seed():
    a = data.recall_tensors(**RECALL, split_seed=5)
    b = data.recall_tensors(**RECALL, split_seed=5)
    c = data.recall_tensors(**RECALL, split_seed=6)
    for key in a:
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["x_train"], c["x_train"])
    assert a["x_train"].shape == (300, 9) and a["x_test"].shape == (100, 9)
    assert a["x_train"].dtype == torch.int64 and a["y_train"].dtype == torch.int64


def test_recall_examples_have_distinct_keys_and_the_query_value_as_label():
    t = data.recall_tensors(**RECALL, split_seed=0)
    keys, values = RECALL["keys"], RECALL["values"]
    for x, y in ((t["x_train"], t["y_train"]), (t["x_test"], t["y_test"])):
        pair_keys, pair_values, query = x[:, 0:-1:2], x[:, 1:-1:2], x[:, -1]
        assert ((pair_keys >= 0) & (pair_keys < keys)).all()
        assert ((pair_values >= keys) & (pair_values < keys + values)).all()
        for row_keys, row_values, q, label in zip(pair_keys, pair_values, query, y, strict=True):
            assert len(set(row_keys.tolist())) == RECALL["pairs"]
            (where,) = (row_keys == q).nonzero(as_tuple=True)
            assert len(where) == 1  # the query is one of the example's keys
            assert label == row_values[where[0]] - keys
    # every class and every query position occurs: labels are not constant by construction
    assert set(t["y_train"].tolist()) == set(range(values))
    positions = (t["x_train"][:, 0:-1:2] == t["x_train"][:, -1:]).float().argmax(1)
    assert set(positions.tolist()) == set(range(RECALL["pairs"]))


def test_recall_refuses_more_pairs_than_keys():
    with pytest.raises(ValueError, match="distinct keys"):
        data.recall_tensors(**{**RECALL, "pairs": 9}, split_seed=0)


def test_recall_round_trip_passes_token_ids_through(tmp_path):
    tensors = data.recall_tensors(**RECALL, split_seed=0)
    manifest = data.write_prepared(
        tensors, tmp_path / "r.pt", tmp_path / "r.json", "recall", 6, vocab_size=14
    )
    assert manifest["sha256"] == data.sha256(tmp_path / "r.pt")
    loaded = data.load_prepared(tmp_path / "r.pt")
    assert loaded.vocab_size == 14 and loaded.num_classes == 6 and loaded.input_shape == (9,)
    batch = loaded.x_test[:7]
    assert loaded.inputs(batch) is batch  # ids, not floats
    with open(tmp_path / "r.pt", "ab") as f:
        f.write(b"junk")
    with pytest.raises(ValueError, match="sha256"):
        data.load_prepared(tmp_path / "r.pt")
