import functools
import gzip
import http.server
import pickle
import threading
import tracemalloc

import numpy as np
import pytest
import torch
from cifar_archive import PER_BATCH, batch_pickle, write_archive

from resdepth import cifar10, data


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / cifar10.ARCHIVE_NAME
    images, labels = write_archive(path)
    return path, images, labels


def test_decodes_the_official_layout(archive):
    path, images, labels = archive
    data = cifar10.load_archive(path, expected_md5=cifar10.md5sum(path))
    n_train = 5 * PER_BATCH
    assert data["x_train"].dtype == torch.uint8 and data["x_train"].shape == (n_train, 3, 32, 32)
    assert data["y_train"].dtype == torch.int64
    assert torch.equal(data["x_train"], torch.from_numpy(images[:n_train]))
    assert torch.equal(data["x_test"], torch.from_numpy(images[n_train:]))
    assert torch.equal(data["y_train"], torch.from_numpy(labels[:n_train]))
    assert torch.equal(data["y_test"], torch.from_numpy(labels[n_train:]))
    assert data["class_names"] == [f"class{k}" for k in range(10)]


def test_channel_stats_match_numpy(archive):
    path, images, _ = archive
    data = cifar10.load_archive(path, expected_md5=cifar10.md5sum(path))
    mean, std = cifar10.channel_stats(data["x_train"], chunk=4)  # several chunks
    train = images[: 5 * PER_BATCH].astype(np.float64)
    np.testing.assert_allclose(mean, train.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(std, train.std(axis=(0, 2, 3)))


def test_prepared_tensors_normalise_the_train_split(archive):
    path, _, _ = archive
    md5 = cifar10.md5sum(path)
    tensors, manifest = cifar10.prepared_tensors(path, expected_md5=md5)
    prepared = data.Prepared(num_classes=10, **tensors)
    x = prepared.inputs(prepared.x_train)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), correction=0), torch.ones(3))
    assert manifest["archive_md5"] == md5 and len(manifest["channel_std"]) == 3
    assert prepared.x_test.dtype == torch.uint8


def test_configured_archive_must_exist_when_the_dag_is_planned_unless_prepared(tmp_path):
    download_target = tmp_path / "downloads" / cifar10.ARCHIVE_NAME
    prepared = tmp_path / "cifar10.pt"
    read = functools.partial(cifar10.archive_to_read, prepared=prepared)
    assert read({"archive": None}, download_target) == str(download_target)
    present = tmp_path / "mine.tar.gz"
    present.write_bytes(b"x")
    assert read({"archive": str(present)}, download_target) == str(present)
    absent = str(tmp_path / "absent.tar.gz")
    with pytest.raises(cifar10.ArchiveError, match="not found") as err:
        read({"archive": absent}, download_target)
    assert "absent.tar.gz" in str(err.value) and cifar10.ARCHIVE_MD5 in str(err.value)
    # Once prepared, a removed archive no longer blocks planning: Snakemake needs it
    # only if the data set must be prepared again (and then names it as missing).
    prepared.write_bytes(b"tensors")
    assert read({"archive": absent}, download_target) == absent


def test_the_official_checksum_is_the_default(archive):
    path, _, _ = archive
    with pytest.raises(cifar10.ArchiveError) as err:
        cifar10.load_archive(path)
    message = str(err.value)
    assert str(path) in message
    assert cifar10.ARCHIVE_MD5 in message and cifar10.md5sum(path) in message
    assert cifar10.URL in message  # says what to do


def test_missing_archive(tmp_path):
    missing = tmp_path / "nowhere.tar.gz"
    with pytest.raises(cifar10.ArchiveError, match="not found") as err:
        cifar10.load_archive(missing)
    assert str(missing) in str(err.value) and cifar10.ARCHIVE_MD5 in str(err.value)


def test_truncated_archive_fails_its_checksum(archive):
    path, _, _ = archive
    good_md5 = cifar10.md5sum(path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(cifar10.ArchiveError, match="truncated") as err:
        cifar10.load_archive(path, expected_md5=good_md5)
    assert good_md5 in str(err.value) and cifar10.md5sum(path) in str(err.value)


def test_truncated_archive_with_matching_checksum_fails_to_decode(archive):
    """Even if a checksum were wrongly declared for a cut file, decoding must fail cleanly."""
    path, _, _ = archive
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(cifar10.ArchiveError, match="cannot decode member") as err:
        cifar10.load_archive(path, expected_md5=cifar10.md5sum(path))
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "member, payload, omit",
    [
        (cifar10.TRAIN_MEMBERS[2], b"\x80\x02garbage", ()),
        (cifar10.TEST_MEMBER, batch_pickle(np.zeros((2, 5), np.uint8), [0, 1]), ()),
        (cifar10.META_MEMBER, None, (cifar10.META_MEMBER,)),
        # A pickle that would run code must be refused, not executed.
        (cifar10.TRAIN_MEMBERS[0], pickle.dumps(print, protocol=2), ()),
    ],
    ids=["garbage", "wrong-shape", "missing-member", "code-in-pickle"],
)
def test_corrupted_member_is_named(tmp_path, member, payload, omit):
    path = tmp_path / "bad.tar.gz"
    write_archive(path, replace={member: payload} if payload else None, omit=omit)
    with pytest.raises(cifar10.ArchiveError, match="cannot decode member") as err:
        cifar10.load_archive(path, expected_md5=cifar10.md5sum(path))
    assert member in str(err.value) and str(path) in str(err.value)


def nested(depth, leaf, fanout=10):
    """A list ``depth`` levels deep with ``fanout`` references to one sublist per level:
    its pickle is a few hundred bytes, its expansion ``fanout**depth`` leaves."""
    node = leaf
    for _ in range(depth):
        node = [node] * fanout
    return node


def hostile_batch(key, value):
    """A batch pickle in the official layout with ``key`` replaced by ``value``."""
    images = np.zeros((PER_BATCH, 3072), np.uint8)
    batch = {b"data": images, b"labels": [0] * PER_BATCH, key: value}
    return pickle.dumps(batch, protocol=2)


def peak_bytes_of_decoding(path):
    """The archive error of reading ``path`` and the peak bytes Python allocated."""
    tracemalloc.start()
    try:
        with pytest.raises(cifar10.ArchiveError) as err:
            cifar10.load_archive(path, expected_md5=cifar10.md5sum(path))
        return str(err.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "member, payload, words",
    [
        # 10**6 labels behind 6 levels of shared references: numpy expanded them whole
        # (10 levels, in a 1 KB archive, reached 5.4 GB and an uncaught MemoryError).
        (cifar10.TRAIN_MEMBERS[1], hostile_batch(b"labels", nested(6, 0)), ["flat list of int"]),
        (cifar10.TEST_MEMBER, hostile_batch(b"data", nested(6, 0)), ["numpy array"]),
        (
            cifar10.META_MEMBER,
            pickle.dumps({b"label_names": nested(6, b"cat")}, protocol=2),
            ["flat list of bytes"],
        ),
    ],
    ids=["nested-labels", "nested-data", "nested-class-names"],
)
def test_shared_references_are_refused_before_they_are_expanded(tmp_path, member, payload, words):
    path = tmp_path / "hostile.tar.gz"
    write_archive(path, replace={member: payload})
    assert path.stat().st_size < 10_000
    message, peak = peak_bytes_of_decoding(path)
    assert "cannot decode member" in message and member in message and str(path) in message
    for word in words:
        assert word in message
    assert peak < 4_000_000, f"{peak:,} bytes allocated to refuse a {len(payload)}-byte pickle"


def test_a_member_larger_than_any_official_batch_is_refused_unread(tmp_path, monkeypatch):
    """A 1 GiB member in a 4.7 MB archive was read whole (1.25 GB peak): the size its
    tar header declares is checked before a byte is read. Here at a 1 MiB bound."""
    official_batch = batch_pickle(np.zeros((10_000, 3, 32, 32), np.uint8), [0] * 10_000)
    assert len(official_batch) < cifar10.MAX_MEMBER_BYTES
    monkeypatch.setattr(cifar10, "MAX_MEMBER_BYTES", 1 << 20)
    path = tmp_path / "huge.tar.gz"
    write_archive(path, replace={cifar10.TRAIN_MEMBERS[3]: bytes(8 << 20)})
    message, peak = peak_bytes_of_decoding(path)
    assert cifar10.TRAIN_MEMBERS[3] in message and "8,388,608 bytes" in message
    assert peak < 2 << 20


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir())


def test_download_from_a_local_url(archive, tmp_path):
    path, _, _ = archive
    dest = tmp_path / "downloads" / "cifar.tar.gz"
    md5 = cifar10.md5sum(path)
    assert cifar10.download(path.as_uri(), dest, expected_md5=md5) == dest
    assert cifar10.md5sum(dest) == md5
    assert _leftovers(dest.parent) == ["cifar.tar.gz"]  # no temporary file left behind


def test_download_removes_what_a_killed_download_left(archive, tmp_path):
    path, _, _ = archive
    dest = tmp_path / "downloads" / "cifar.tar.gz"
    dest.parent.mkdir()
    (dest.parent / ".cifar.tar.gz.x1y2z3.part").write_bytes(b"half an archive")
    cifar10.download(path.as_uri(), dest, expected_md5=cifar10.md5sum(path))
    assert _leftovers(dest.parent) == ["cifar.tar.gz"]


def test_download_with_wrong_checksum_leaves_nothing(archive, tmp_path):
    path, _, _ = archive
    dest = tmp_path / "downloads" / "cifar.tar.gz"
    with pytest.raises(cifar10.ArchiveError, match="nothing was written"):
        cifar10.download(path.as_uri(), dest)  # the official checksum cannot match
    assert _leftovers(dest.parent) == []


def test_download_from_an_unreachable_url_leaves_nothing(tmp_path):
    dest = tmp_path / "cifar.tar.gz"
    with pytest.raises(cifar10.ArchiveError, match="could not download"):
        cifar10.download((tmp_path / "absent.tar.gz").as_uri(), dest)
    assert _leftovers(tmp_path) == []


def test_download_cut_off_mid_transfer_leaves_nothing(archive, tmp_path):
    """A server on 127.0.0.1 announces the whole archive but sends half and hangs up."""
    path, _, _ = archive
    body = path.read_bytes()

    class HalfHandler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), HalfHandler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    dest = tmp_path / "downloads" / "cifar.tar.gz"
    try:
        with pytest.raises(cifar10.ArchiveError):
            url = f"http://127.0.0.1:{server.server_port}/cifar.tar.gz"
            cifar10.download(url, dest, expected_md5=cifar10.md5sum(path))
    finally:
        thread.join(timeout=10)
        server.server_close()
    assert _leftovers(dest.parent) == []
