"""Data sets: the real files, the search order, the strict IDX reader (fuzzed), and the download
path for real against a local HTTP server on 127.0.0.1."""

import gzip
import hashlib
import http.server
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npae import datasets
from npae.datasets import loader
from npae.datasets.idx import IDXError, parse_idx, read_idx


def test_load_data_gives_kerass_arrays(data_root):
    (x_train, y_train), (x_test, y_test) = datasets.fashion_mnist.load_data(data_dir=data_root)
    assert x_train.shape == (8000, 28, 28) and x_test.shape == (2000, 28, 28)
    assert y_train.shape == (8000,) and x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert set(np.unique(y_test)) == set(range(10)) and x_train.max() == 255


def test_mnist_test_split_is_the_real_one(mnist_test_split):
    x, y = mnist_test_split
    raw = idx_bytes(x, 0x08)  # the decompressed file's bytes, rebuilt: their md5 is MNIST's
    assert hashlib.md5(raw).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    assert x.shape == (10000, 28, 28) and list(y[:5]) == [7, 2, 1, 0, 4]


def test_npae_data_dir_and_decompressed_files(mnist_test_split, tmp_path, monkeypatch):
    folder = tmp_path / "root" / "mnist"
    folder.mkdir(parents=True)
    x, y = mnist_test_split
    (folder / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(x, 0x08))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(y, 0x08))
    monkeypatch.setenv("NPAE_DATA_DIR", str(tmp_path / "root"))
    got, labels = datasets.load_split("mnist", "test", download=False)
    np.testing.assert_array_equal(got, x)
    np.testing.assert_array_equal(labels, y)


def test_explicit_folder_without_files_is_an_error(tmp_path):
    with pytest.raises(datasets.DatasetNotFoundError, match="does not hold the mnist train files"):
        datasets.mnist.load_data(data_dir=tmp_path)


def test_offline_and_uncached_error_says_what_to_do(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    monkeypatch.setitem(loader.DATASETS["mnist"], "mirrors", ["http://127.0.0.1:9/"])  # nothing listens
    with pytest.raises(datasets.DatasetNotFoundError) as info:
        datasets.mnist.load_data()
    msg = str(info.value)
    assert "Searched:" in msg and "NPAE_DATA_DIR" in msg and str(tmp_path / "cache" / "npae" / "mnist") in msg
    assert "cannot connect" in msg


# ---- the IDX reader -------------------------------------------------------------------------
def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(datasets.idx.DTYPES[code]).tobytes()


def test_idx_round_trip_all_dtypes():
    rng = np.random.default_rng(0)
    for code, dtype in datasets.idx.DTYPES.items():
        a = (rng.standard_normal((3, 4)) * 50).astype(dtype)
        np.testing.assert_array_equal(parse_idx(idx_bytes(a, code)), a)


@pytest.mark.parametrize("data,message", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic number"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown dtype code 0x07"),
    (b"\x00\x00\x08\x00", "rank 0"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", r"payload is 2 bytes .* needs 3 \(truncated\)"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", r"\(trailing data\)"),
    (b"\x00\x00\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
     "more than the 2,147,483,648 this read allows"),
])
def test_idx_errors_name_the_problem(data, message):
    with pytest.raises(IDXError, match=message):
        parse_idx(data, "some.idx")


def test_idx_file_errors_name_the_file(tmp_path):
    bad_gz = tmp_path / "images.gz"
    bad_gz.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 3, 3), np.uint8)))[:-10])
    with pytest.raises(IDXError, match=r"images.gz: corrupt or truncated gzip"):
        read_idx(bad_gz)


def test_image_and_label_counts_must_agree(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(IDXError, match="has 5 images but .* has 4 labels"):
        datasets.load_split("mnist", "test", path=folder)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_random_bytes_give_array_or_idx_error(data):
    try:
        out = parse_idx(data)
    except IDXError:
        return
    assert out.size * out.dtype.itemsize == len(data) - 4 - 4 * out.ndim


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 15), st.integers(0, 255), st.integers(0, 40))
def test_fuzz_mutated_headers_give_array_or_idx_error(pos, value, cut):
    good = bytearray(idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4)))
    good[pos] = value
    data = bytes(good[: len(good) - cut])
    try:
        out = parse_idx(data)
    except IDXError:
        return
    header = 4 + 4 * out.ndim
    assert out.size * out.dtype.itemsize == len(data) - header


# ---- downloads against a local server --------------------------------------------------------
class Server:
    """Serves the shared MNIST test files under /ok/, a 404 under /missing/, half of each file and
    then a closed connection under /drop/, and altered bytes under /corrupt/."""

    def __init__(self, files: dict[str, bytes]):
        files_ = files
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                hits.append(self.path)
                mode, _, name = self.path.strip("/").partition("/")
                body = files_.get(name)
                if mode == "missing" or body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "drop":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body if mode == "ok" else body[:-100] + b"x" * 100)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def mirrors(self, *modes):
        return [f"{self.url}/{m}/" for m in modes]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def isolate(monkeypatch, tmp_path):
    """No env data dir, a fresh cache under tmp_path, no system data sets."""
    monkeypatch.delenv("NPAE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(loader, "SYSTEM_DIR", tmp_path / "no-system-data")


@pytest.fixture
def server(mnist_test_split, monkeypatch, tmp_path):
    x, y = mnist_test_split
    files = {loader.FILES["test"][0]: gzip.compress(idx_bytes(x, 0x08), mtime=0),
             loader.FILES["test"][1]: gzip.compress(idx_bytes(y, 0x08), mtime=0)}
    srv = Server(files)
    isolate(monkeypatch, tmp_path)
    # the copies served here are compressed anew, so the test supplies their checksums
    monkeypatch.setitem(loader.DATASETS["mnist"], "md5", {n: hashlib.md5(b).hexdigest() for n, b in files.items()})
    monkeypatch.setitem(loader.DATASETS["mnist"], "size", {n: len(b) for n, b in files.items()})
    yield srv
    srv.close()


def cache_listing(tmp_path):
    root = tmp_path / "cache" / "npae" / "mnist"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_download_404_on_first_mirror_then_second_succeeds(server, monkeypatch, tmp_path):
    monkeypatch.setitem(loader.DATASETS["mnist"], "mirrors", server.mirrors("missing", "ok"))
    x, y = datasets.mnist.load_test_data()
    assert x.shape == (10000, 28, 28)
    assert cache_listing(tmp_path) == sorted(loader.FILES["test"])
    assert any(h.startswith("/missing/") for h in server.hits)
    server.hits.clear()
    datasets.mnist.load_test_data()  # now from the cache: no request at all
    assert server.hits == []


def test_dropped_connection_leaves_nothing_and_falls_back(server, monkeypatch, tmp_path):
    monkeypatch.setitem(loader.DATASETS["mnist"], "mirrors", server.mirrors("drop"))
    with pytest.raises(datasets.DatasetNotFoundError, match="after .* of .* bytes|IncompleteRead|incomplete"):
        datasets.mnist.load_test_data()
    assert cache_listing(tmp_path) == []
    monkeypatch.setitem(loader.DATASETS["mnist"], "mirrors", server.mirrors("drop", "ok"))
    assert datasets.mnist.load_test_data()[0].shape == (10000, 28, 28)


def test_checksum_mismatch_is_rejected_and_not_cached(server, monkeypatch, tmp_path):
    monkeypatch.setitem(loader.DATASETS["mnist"], "mirrors", server.mirrors("corrupt"))
    with pytest.raises(datasets.DatasetNotFoundError, match="checksum mismatch: expected md5"):
        datasets.mnist.load_test_data()
    assert cache_listing(tmp_path) == []


def test_unwritable_cache_still_loads_with_a_warning(server, monkeypatch, tmp_path):
    monkeypatch.setitem(loader.DATASETS["mnist"], "mirrors", server.mirrors("ok"))
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")  # unwritable even for root
    start = __import__("time").time() - 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, _ = datasets.mnist.load_test_data()
    assert x.shape == (10000, 28, 28)
    assert any("cannot write to the cache" in str(w.message) for w in caught)
    assert blocker.is_file()
    import tempfile

    assert not [p for p in Path(tempfile.gettempdir()).glob("npae-*") if p.stat().st_mtime > start]  # none left


def test_preprocessing_helpers():
    x = np.array([[[0, 255], [51, 102]]], np.uint8)
    f = datasets.to_float(x)
    assert f.dtype == np.float32 and f.max() == 1.0
    assert datasets.flatten(f).shape == (1, 4)
    assert datasets.to_images(np.zeros((3, 784))).shape == (3, 28, 28, 1)
    half = np.full((2, 9), 0.5, np.float32)
    a, b = datasets.add_noise(half, seed=3), datasets.add_noise(half, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1 and not np.all(a == 0.5)
    with pytest.raises(ValueError, match=r"cannot shape samples of \(5,\) into \(28, 28, 1\)"):
        datasets.to_images(np.zeros((2, 5)))
