"""Small CIFAR-10 archives in the official format (member names, pickle layout)."""

import io
import pickle
import tarfile

import numpy as np

from resdepth import cifar10

PER_BATCH = 3  # images per batch file in the small test archives


def batch_pickle(images, labels):
    """One batch file in the official layout: a protocol-2 pickle with bytes keys."""
    batch = {
        b"batch_label": b"test batch",
        b"labels": [int(y) for y in labels],
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"img{i}.png".encode() for i in range(len(images))],
    }
    return pickle.dumps(batch, protocol=2)


def write_archive(path, replace=None, omit=()):
    """Write a small archive with the official member names; return its images and labels.

    ``replace`` maps a member name to raw bytes stored instead of its pickle; ``omit``
    leaves members out. Image i of the whole set has every pixel of channel c equal to
    (i·7 + c) mod 256, label i mod 10, so decoding errors show up as wrong values.
    """
    members = (*cifar10.TRAIN_MEMBERS, cifar10.TEST_MEMBER)
    n = PER_BATCH * len(members)
    images = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    for i in range(n):
        for c in range(3):
            images[i, c] = (i * 7 + c) % 256
    images[:, 0, 0, 1] = 255  # break the symmetry between rows and columns
    labels = np.arange(n) % 10
    payloads = {
        name: batch_pickle(
            images[k * PER_BATCH : (k + 1) * PER_BATCH], labels[k * PER_BATCH : (k + 1) * PER_BATCH]
        )
        for k, name in enumerate(members)
    }
    names = [f"class{k}".encode() for k in range(10)]
    payloads[cifar10.META_MEMBER] = pickle.dumps({b"label_names": names}, protocol=2)
    payloads.update(replace or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in payloads.items():
            if name in omit:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return images, labels
