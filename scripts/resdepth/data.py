"""Data sets as whole tensors: prepared once by a rule, loaded whole by every job.

A prepared data set is a ``torch.save``d dict of tensors ``x_train, y_train, x_test,
y_test`` (optionally ``mean``/``std`` for uint8 images, normalised per batch on the
device) plus a JSON manifest. Training jobs read only these two files. Token data sets
(``recall``) store int64 token ids, which ``Prepared.inputs`` passes through unchanged,
and name their ``vocab_size`` in the manifest (the embedding's size).
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Prepared:
    """A data set held as tensors on one device, ready for index-based batching."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    augment: bool = False  # random crop + flip of every training batch (images only)
    vocab_size: int | None = None  # token data sets: ids are 0 .. vocab_size - 1

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    def model_options(self, arch_options=None):
        """The model builder's options: the config's, plus the vocabulary of token data
        (the transformer's embedding size comes from the data, not the config)."""
        options = dict(arch_options or {})
        if self.vocab_size is not None:
            options["vocab_size"] = self.vocab_size
        return options

    def inputs(self, x):
        """Model inputs for a batch: floats, normalised when the data are stored raw;
        token ids unchanged."""
        if self.mean is None:
            return x
        return (x.float() - self.mean) / self.std


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_prepared(tensors, pt_path, json_path, name, num_classes, **extra):
    """Write the tensor file (atomically) and its manifest with sizes, counts and sha256."""
    pt_path, json_path = Path(pt_path), Path(json_path)
    pt_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pt_path.with_name(pt_path.name + ".tmp")
    torch.save(tensors, tmp)
    os.replace(tmp, pt_path)

    def counts(y):
        return torch.bincount(y, minlength=num_classes).tolist()

    manifest = {
        "dataset": name,
        "n_train": len(tensors["y_train"]),
        "n_test": len(tensors["y_test"]),
        "input_shape": list(tensors["x_train"].shape[1:]),
        "num_classes": num_classes,
        "train_class_counts": counts(tensors["y_train"]),
        "test_class_counts": counts(tensors["y_test"]),
        "sha256": sha256(pt_path),
        **extra,
    }
    json_path.write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return manifest


def load_prepared(pt_path, device="cpu", augment=False):
    """Load a prepared data set onto ``device``, checking it against its manifest.

    ``augment`` (the data set's config says so) turns on batch augmentation in training.
    """
    pt_path = Path(pt_path)
    manifest = json.loads(pt_path.with_suffix(".json").read_text())
    actual = sha256(pt_path)
    if actual != manifest["sha256"]:
        raise ValueError(
            f"{pt_path}: sha256 {actual} does not match its manifest ({manifest['sha256']}); "
            "delete the file and rerun the workflow to prepare it again"
        )
    tensors = torch.load(pt_path, map_location=device, weights_only=True)
    return Prepared(
        num_classes=manifest["num_classes"],
        augment=augment,
        vocab_size=manifest.get("vocab_size"),
        **tensors,
    )


def digits_tensors(test_fraction, split_seed):
    """scikit-learn's 8×8 digits: stratified split, standardised with train statistics.

    Pixels that are constant on the train split (the image border) keep std 1 so they
    map to 0 instead of dividing by zero.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=split_seed
    )
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    return {
        "x_train": torch.from_numpy((x_train - mean) / std),
        "y_train": torch.from_numpy(y_train),
        "x_test": torch.from_numpy((x_test - mean) / std),
        "y_test": torch.from_numpy(y_test),
    }


def recall_sequence_length(pairs):
    """Tokens of one associative-recall example: ``pairs`` (key, value) pairs, then the
    query key."""
    return 2 * pairs + 1


def recall_tensors(pairs, keys, values, n_train, n_test, split_seed):
    """Synthetic associative recall: ``k_1 v_1 … k_M v_M q`` → the value stored under q.

    Each example draws M = ``pairs`` distinct keys out of ``keys`` key tokens (ids
    0 .. keys − 1), a value for each out of ``values`` value tokens (ids keys ..
    keys + values − 1; values may repeat), and a query: one of its M keys, uniformly. The
    label is the query's value as a class 0 .. values − 1, so chance is 1/values. Binding
    a value to its key takes a previous-token step composed with the query's lookup (two
    modules at least); the study of transformers (issue 20) trains on it.

    Train and test are consecutive draws of one ``numpy`` generator seeded with
    ``split_seed``: the same settings give the same tensors bit for bit. With about
    keys!/(keys − M)! · values^M · M distinct examples (4·10^18 at the defaults) the two
    splits share no example except by a vanishing chance; nothing is deduplicated.
    """
    if not 1 <= pairs <= keys:
        raise ValueError(f"recall needs 1 <= pairs <= keys (distinct keys), got {pairs}, {keys}")
    if values < 2:
        raise ValueError(f"recall needs at least 2 value tokens, got {values}")
    rng = np.random.default_rng(split_seed)
    n = n_train + n_test
    # M distinct keys per example: the first M of a uniform random permutation
    key_ids = np.argsort(rng.random((n, keys)), axis=1)[:, :pairs]
    value_classes = rng.integers(values, size=(n, pairs))
    query = rng.integers(pairs, size=n)
    tokens = np.empty((n, recall_sequence_length(pairs)), dtype=np.int64)
    tokens[:, 0:-1:2] = key_ids
    tokens[:, 1:-1:2] = keys + value_classes
    rows = np.arange(n)
    tokens[:, -1] = key_ids[rows, query]
    labels = value_classes[rows, query].astype(np.int64)
    x, y = torch.from_numpy(tokens), torch.from_numpy(labels)
    return {
        "x_train": x[:n_train],
        "y_train": y[:n_train],
        "x_test": x[n_train:],
        "y_test": y[n_train:],
    }
