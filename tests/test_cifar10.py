import gzip
import http.server
import io
import pickle
import tarfile
import threading

import numpy as np
import pytest
import torch

from resdepth import cifar10

PER_BATCH = 3  # images per batch file in the small test archives


def _batch_pickle(images, labels):
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
        name: _batch_pickle(
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
    train = images[: 5 * PER_BATCH] / 255
    np.testing.assert_allclose(mean, train.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(std, train.std(axis=(0, 2, 3)))


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
        (cifar10.TEST_MEMBER, _batch_pickle(np.zeros((2, 5), np.uint8), [0, 1]), ()),
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


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir())


def test_download_from_a_local_url(archive, tmp_path):
    path, _, _ = archive
    dest = tmp_path / "downloads" / "cifar.tar.gz"
    md5 = cifar10.md5sum(path)
    assert cifar10.download(path.as_uri(), dest, expected_md5=md5) == dest
    assert cifar10.md5sum(dest) == md5
    assert _leftovers(dest.parent) == ["cifar.tar.gz"]  # no temporary file left behind


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
