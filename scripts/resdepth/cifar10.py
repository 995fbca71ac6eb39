"""CIFAR-10 from the official python archive, decoded with numpy and pickle only.

The archive (``cifar-10-python.tar.gz``) holds five training batches and one test batch,
each a Python-2 pickle of ``{b"data": uint8 array N×3072, b"labels": list of int, ...}``
whose rows are the red, green and blue 32×32 planes one after the other. We check the
archive's MD5 before reading anything, so a truncated download or a different file fails
early with a message that says what to do; the checksum can only be replaced by a caller
that says explicitly it is reading a test archive.

torch is imported only where tensors are made: the Snakefile imports this module to
check the configured archive while it plans the DAG.
"""

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from http.client import HTTPException
from pathlib import Path

import numpy as np

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_BYTES = 170_498_071

TRAIN_MEMBERS = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
TEST_MEMBER = "cifar-10-batches-py/test_batch"
META_MEMBER = "cifar-10-batches-py/batches.meta"

IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10

#: The largest member the reader reads: an official batch is 31 MB (10,000 images). A
#: tar header may declare any size, and gzip packs a gigabyte of zeros into a megabyte.
MAX_MEMBER_BYTES = 64 << 20

#: What to tell the user when the archive at hand is unusable.
FIX_HINT = (
    f"delete it and download the official archive again from {URL} "
    f"({ARCHIVE_BYTES:,} bytes, MD5 {ARCHIVE_MD5}), or leave the archive path unset "
    "so the pipeline downloads it"
)


class ArchiveError(RuntimeError):
    """The CIFAR-10 archive is missing, not the expected file, or cannot be decoded."""


def md5sum(path, chunk_bytes=1 << 20):
    """Hex MD5 of a file, read in chunks so a 170 MB archive never sits in memory twice."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _require_file(path, expected_md5):
    if not Path(path).is_file():
        raise ArchiveError(
            f"CIFAR-10 archive {path} not found (expected MD5 {expected_md5}): download "
            f"{URL} there, point the config at the file you have, or leave the archive "
            "path unset so the pipeline downloads it"
        )


def archive_to_read(settings, download_target, prepared):
    """The archive the prep rule reads (the config's ``datasets.cifar10`` section):
    the configured file, which must exist unless the data set is ``prepared`` already
    (then Snakemake needs it only to prepare it again), or else where the download rule
    puts it."""
    if settings.get("archive") is None:
        return str(download_target)
    if not Path(prepared).exists():
        _require_file(settings["archive"], settings.get("test_archive_md5") or ARCHIVE_MD5)
    return settings["archive"]


def verify_archive(path, expected_md5=ARCHIVE_MD5):
    """Fail with a clear message unless ``path`` exists and has the expected MD5."""
    path = Path(path)
    _require_file(path, expected_md5)
    actual = md5sum(path)
    if actual != expected_md5:
        raise ArchiveError(
            f"CIFAR-10 archive {path} has MD5 {actual} ({path.stat().st_size:,} bytes), "
            f"expected {expected_md5}: the file is truncated, corrupted or not the official "
            f"archive; {FIX_HINT}"
        )


def download(url, dest, expected_md5=ARCHIVE_MD5, timeout_s=60):
    """Download ``url`` to ``dest``; the file appears only once its MD5 matches.

    The bytes go to a temporary file next to ``dest`` and are renamed into place
    atomically, so an interrupted or corrupted transfer never leaves a half file that
    looks complete. A temporary file left by a killed download is removed (Snakemake's
    lock keeps two downloads from running at once).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*.part"):  # left by a killed download
        stale.unlink()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if actual != expected_md5:
            raise ArchiveError(
                f"download of {url} has MD5 {actual}, expected {expected_md5}; nothing was "
                f"written to {dest}: try again, or download it by hand and point the config at it"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, HTTPException, OSError) as err:
        raise ArchiveError(
            f"could not download {url} to {dest} ({err}); on a machine without network, "
            f"download {ARCHIVE_NAME} elsewhere and point the config's archive path at it"
        ) from err
    finally:
        tmp.unlink(missing_ok=True)
    return dest


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that builds only numpy arrays: a batch file cannot run code.

    The official batches are Python-2 pickles that name ``numpy.core``; pickles written
    by Python 3 (our test archives) name ``numpy._core`` and ``_codecs.encode``.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_member(tar, member):
    """Unpickle one archive member (at most ``MAX_MEMBER_BYTES``) into a dict with bytes
    keys."""
    info = tar.getmember(member)
    if not info.isfile():
        raise ValueError("not a regular file")
    if info.size > MAX_MEMBER_BYTES:
        raise ValueError(
            f"{info.size:,} bytes, more than the {MAX_MEMBER_BYTES:,} an official batch fits in"
        )
    return _ArrayUnpickler(io.BytesIO(tar.extractfile(info).read()), encoding="bytes").load()


def _flat(values, kind):
    """``values`` if it is a flat list of ``kind``; anything else is refused before it is
    expanded (a pickle's shared references nest a list 10 levels deep in a kilobyte,
    which numpy would expand to gigabytes)."""
    if not isinstance(values, list) or not all(type(value) is kind for value in values):
        raise ValueError(f"expected a flat list of {kind.__name__}, got {type(values).__name__}")
    return values


def _decode_batch(batch):
    """Return (uint8 N×3×32×32 images, int64 N labels) arrays from one unpickled batch."""
    data = batch[b"data"]
    if not isinstance(data, np.ndarray):
        raise ValueError(f"data is a {type(data).__name__}, expected a numpy array")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != np.prod(IMAGE_SHAPE):
        raise ValueError(f"data is {data.dtype} {data.shape}, expected uint8 N×3072")
    labels = np.array(_flat(batch[b"labels"], int), dtype=np.int64)
    if labels.shape != (len(data),) or labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels do not match the {len(data)} images or lie outside 0..9")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def load_archive(path, expected_md5=ARCHIVE_MD5):
    """Decode the archive into ``x_train, y_train, x_test, y_test`` and the class names.

    Images are uint8 N×3×32×32 tensors (normalise them on the device, per batch),
    labels int64.
    """
    import torch

    verify_archive(path, expected_md5)
    member = "(archive)"
    try:
        with tarfile.open(path, "r:gz") as tar:
            train = []
            for member in TRAIN_MEMBERS:
                train.append(_decode_batch(_read_member(tar, member)))
            member = TEST_MEMBER
            x_test, y_test = _decode_batch(_read_member(tar, member))
            member = META_MEMBER
            names = _flat(_read_member(tar, member)[b"label_names"], bytes)
            class_names = [name.decode() for name in names]
    except (
        tarfile.TarError,
        EOFError,
        OSError,
        zlib.error,
        pickle.UnpicklingError,
        KeyError,
        ValueError,
        TypeError,
    ) as err:
        raise ArchiveError(
            f"cannot decode member {member} of CIFAR-10 archive {path} "
            f"(MD5 {expected_md5}, as expected): {type(err).__name__}: {err}; {FIX_HINT}"
        ) from err
    if len(class_names) != NUM_CLASSES:
        raise ArchiveError(f"{META_MEMBER} in {path} names {len(class_names)} classes, expected 10")
    return {
        "x_train": torch.from_numpy(np.concatenate([x for x, _ in train])),
        "y_train": torch.from_numpy(np.concatenate([y for _, y in train])),
        "x_test": torch.from_numpy(x_test.copy()),
        "y_test": torch.from_numpy(y_test),
        "class_names": class_names,
    }


def channel_stats(images, chunk=5000):
    """Per-channel mean and std of N×C×H×W uint8 images, in pixel values (0..255).

    Summed in float64 a chunk at a time: exact enough, and 50,000 images never exist
    as float64 all at once.
    """
    total = np.zeros(images.shape[1])
    total_sq = np.zeros(images.shape[1])
    for start in range(0, len(images), chunk):
        x = np.asarray(images[start : start + chunk], dtype=np.float64)
        total += x.sum(axis=(0, 2, 3))
        total_sq += (x * x).sum(axis=(0, 2, 3))
    count = len(images) * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0))
    return mean.tolist(), std.tolist()


def prepared_tensors(path, expected_md5=ARCHIVE_MD5):
    """The archive as a prepared data set: tensors for ``data.write_prepared`` (uint8
    images with per-channel ``mean``/``std`` of the train split, shaped 3×1×1 to
    normalise batches on the device) and the manifest's data-set specific keys."""
    import torch

    data = load_archive(path, expected_md5)
    mean, std = channel_stats(data["x_train"])
    tensors = {key: data[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    tensors["mean"] = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    tensors["std"] = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    manifest = {
        "archive_md5": expected_md5,
        "class_names": data["class_names"],
        "channel_mean": mean,
        "channel_std": std,
        "stored": "uint8 pixels; model input = (x - channel_mean) / channel_std per batch",
    }
    return tensors, manifest
