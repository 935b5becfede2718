"""Hostile input: damaged and malicious model files, IDX bombs, hostile mirrors, interrupted and
killed runs, and arguments that would become wrong numbers. Each must give one clear error (or a
warning and a correct result), never a crash, a silent wrong answer, or a lost or corrupt file."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npae
from npae import autoencoders, callbacks, cli, optimizers
from npae.datasets import download, loader
from npae.datasets.idx import IDXError, read_idx
from npae.layers import Dense, Input
from npae.models import Model, Sequential, load_model
from npae.saving import ModelFileError

REPO = Path(__file__).resolve().parents[1]


def small(seed=0, optimizer="adam"):
    ae, _, _ = autoencoders.vanilla(encoding_dim=4, input_dim=6, optimizer=optimizer, seed=seed)
    return ae


def data(n=32, d=6, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 0.95, (n, d)).astype(np.float32)


def saved(tmp_path, name="m.npz", optimizer="adam"):
    ae = small(optimizer=optimizer)
    ae.fit(data(), data(), epochs=1, batch_size=8, verbose=0)
    path = tmp_path / name
    ae.save(path)
    return path


def entries(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


# -- 1. model files that would corrupt memory --------------------------------------------------------
@pytest.mark.parametrize("slot", [np.zeros(3, np.float32), np.zeros((7, 4), np.float32), np.zeros((4, 6), np.float32),
                                  np.zeros((6, 4), np.int32), np.zeros((6, 4), np.complex64)],
                         ids=["short", "long", "transposed", "int32", "complex"])
def test_a_damaged_optimizer_slot_is_refused_before_any_kernel_sees_it(tmp_path, slot):
    arrays = entries(saved(tmp_path))
    arrays["opt_0"] = slot  # the first slot of the (6, 4) kernel
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match="opt_0"):
        load_model(tmp_path / "bad.npz")
    fresh = small(seed=1)
    with pytest.raises(ModelFileError, match="opt_0"):
        fresh.load_weights(tmp_path / "bad.npz")  # the --resume path
    fresh.fit(data(), data(), epochs=1, batch_size=8, verbose=0)  # the model is untouched and trains
    assert all(np.isfinite(w).all() for w in fresh.get_weights())


def test_optimizer_state_set_by_hand_is_checked_by_the_kernels():
    ae = small()
    ae.fit(data(), data(), epochs=1, batch_size=8, verbose=0)
    key = next(iter(ae.optimizer.state))
    ae.optimizer.state[key]["m"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="optimizer: expected arrays of shape"):
        ae.fit(data(), data(), epochs=1, batch_size=8, verbose=0)


# -- 2. memory bombs -----------------------------------------------------------------------------------
def rewrite_config(path, out, change):
    arrays = entries(path)
    config = json.loads(str(arrays["npae_config"]))
    change(config)
    arrays["npae_config"] = np.array(json.dumps(config))
    np.savez(out, **arrays)


def first(config, class_name):
    """The config of the description's first layer of ``class_name``."""
    return next(spec["config"] for spec in config["layers"] if spec["class_name"] == class_name)


@pytest.mark.parametrize("change", [
    lambda c: first(c, "Dense").update(units=20_000_000),
    lambda c: first(c, "Dense").update(units=10**9),
    lambda c: first(c, "InputLayer").update(input_shape=[10**12]),
], ids=["Dense(20M)", "Dense(1e9)", "input_shape 1e12"])
def test_a_description_that_asks_for_huge_weights_is_refused_at_once(tmp_path, change):
    rewrite_config(saved(tmp_path), tmp_path / "bomb.npz", change)
    start = time.perf_counter()
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "bomb.npz")
    assert time.perf_counter() - start < 2.0


def deflated_zeros_member(zf, name, header_shape, nbytes):
    """A .npy member whose header claims ``header_shape`` float32 and whose payload is ``nbytes``
    zeros, deflated (about 1000:1)."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(0, np.float32))
    header["shape"] = header_shape
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as f:
        f.write(buf.getvalue())
        chunk = bytes(1 << 20)
        for _ in range(nbytes // len(chunk)):
            f.write(chunk)


def test_a_small_file_that_inflates_to_a_huge_entry_is_never_inflated(tmp_path):
    good = entries(saved(tmp_path))
    path = tmp_path / "inflating.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for k, v in good.items():
            if k != "weight_0":
                import io

                buf = io.BytesIO()
                np.save(buf, v)
                zf.writestr(f"{k}.npy", buf.getvalue())
        deflated_zeros_member(zf, "weight_0.npy", (50_000, 2_000), 400 * 2**20)  # 400 MB of zeros
    assert path.stat().st_size < 2 * 2**20
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="weight_0"):
        load_model(path)
    assert time.perf_counter() - start < 2.0


def test_an_unused_huge_member_is_never_read(tmp_path):
    path = saved(tmp_path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        deflated_zeros_member(zf, "junk.npy", (100_000, 1_000), 400 * 2**20)
    start = time.perf_counter()
    model = load_model(path)
    assert time.perf_counter() - start < 2.0 and model.count_params() == 6 * 4 + 4 + 4 * 6 + 6


@pytest.mark.parametrize("config", [[1, 2], "x", 5, None])
def test_a_description_that_is_json_but_not_an_object(tmp_path, config):
    arrays = entries(saved(tmp_path))
    arrays["npae_config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match="must be a JSON object"):
        load_model(tmp_path / "bad.npz")


def test_other_files_are_clear_errors(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(ModelFileError, match="not a zip archive"):
        load_model(tmp_path / "x.npy")
    path = tmp_path / "bzip.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as zf:
        zf.writestr("npae_config.npy", b"whatever")
    with pytest.raises(ModelFileError, match="compression method"):
        load_model(path)


@pytest.mark.parametrize("weight", [np.array([None] * 24, dtype=object).reshape(6, 4),
                                    np.zeros((6, 4), complex), np.zeros((6, 4), dtype="f4,f4"),
                                    np.full((6, 4), "1")], ids=["object", "complex", "structured", "strings"])
def test_weights_that_would_become_wrong_numbers_are_refused(tmp_path, weight):
    arrays = entries(saved(tmp_path))
    arrays["weight_0"] = weight
    np.savez(tmp_path / "bad.npz", **arrays)  # (object arrays: pickled by np.savez, never unpickled)
    with pytest.raises(ModelFileError, match="weight_0"):
        load_model(tmp_path / "bad.npz")


def test_a_negative_step_count_in_a_file_is_refused(tmp_path):
    rewrite_config(saved(tmp_path), tmp_path / "bad.npz", lambda c: c["compile"].update(iterations=-1))
    with pytest.raises(ModelFileError, match="iterations must be a non-negative int"):
        load_model(tmp_path / "bad.npz")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)), min_size=1, max_size=4))
def test_bit_flipped_model_files_load_or_give_one_clear_error(tmp_path_factory, flips):
    folder = tmp_path_factory.mktemp("flip")
    good = saved(folder).read_bytes()
    data_ = bytearray(good)
    for pos, bit in flips:
        data_[pos % len(data_)] ^= 1 << bit
    path = folder / "flipped.npz"
    path.write_bytes(bytes(data_))
    try:
        model = load_model(path)
    except ModelFileError:
        return
    model.predict(data(4))  # a file that loads is a model that runs


# -- 2b. IDX bombs and bad images ---------------------------------------------------------------------
def test_an_idx_gz_that_would_inflate_to_gigabytes_is_refused_after_its_header(tmp_path):
    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 8, 3]) + (200_000).to_bytes(4, "big") + (100).to_bytes(4, "big") +
                (100).to_bytes(4, "big"))
        chunk = bytes(1 << 20)
        for _ in range(100):  # 100 MB of zeros (2 GB claimed): a few hundred KB on disk
            f.write(chunk)
    start = time.perf_counter()
    with pytest.raises(IDXError, match="more than the 1,000,000 this read allows"):
        read_idx(path, max_bytes=1_000_000)
    assert time.perf_counter() - start < 1.0
    # a header that claims little, followed by a flood: stopped right after what it claims
    path2 = tmp_path / "flood-idx1-ubyte.gz"
    with gzip.open(path2, "wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(10))
        for _ in range(100):
            f.write(bytes(1 << 20))
    start = time.perf_counter()
    with pytest.raises(IDXError, match="trailing data"):
        read_idx(path2)
    assert time.perf_counter() - start < 1.0


def test_images_of_another_size_are_a_clear_error(tmp_path, monkeypatch):
    from conftest import write_split

    x = np.zeros((20, 28, 27), np.uint8)
    write_split(tmp_path / "mnist", "test", x, np.zeros(20, np.uint8))
    with pytest.raises(IDXError, match=r"expected uint8 images of shape \(n, 28, 28\), got uint8 \(20, 28, 27\)"):
        npae.datasets.load_split("mnist", "test", data_dir=tmp_path)


# -- 3. hostile mirrors --------------------------------------------------------------------------------
class Hostile:
    """A local server that streams without end (no Content-Length), or a byte at a time."""

    def __init__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                self.send_response(200)
                if "/endless/" in self.path:
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(bytes(1 << 16))
                    except OSError:
                        return
                self.send_header("Content-Length", "1000")
                self.end_headers()
                try:
                    for _ in range(1000):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    return

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hostile():
    srv = Hostile()
    yield srv
    srv.close()


def test_a_mirror_that_sends_more_than_the_file_is_stopped(hostile, tmp_path):
    start = time.perf_counter()
    with pytest.raises(download.DownloadError, match="more than the file's 4,542 bytes"):
        download.download_verified("t10k-labels-idx1-ubyte.gz", [hostile.url + "/endless/"], "0" * 32,
                                   str(tmp_path), size=4542)
    assert time.perf_counter() - start < 5 and os.listdir(tmp_path) == []


def test_a_mirror_that_trickles_meets_the_deadline(hostile, tmp_path):
    start = time.perf_counter()
    with pytest.raises(download.DownloadError, match="too slow"):
        download.download_verified("t10k-labels-idx1-ubyte.gz", [hostile.url + "/slow/"], "0" * 32, str(tmp_path),
                                   size=1000, timeout=5, deadline=1.0)
    assert time.perf_counter() - start < 5 and os.listdir(tmp_path) == []


def test_a_killed_downloads_part_file_is_removed_by_the_next(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".t10k-labels-idx1-ubyte.gz.{dead.pid}.abcd.part"
    live = tmp_path / f".t10k-labels-idx1-ubyte.gz.{os.getpid()}.efgh.part"
    stale.write_bytes(b"half a file")
    live.write_bytes(b"a download in progress")
    download.remove_stale_parts(str(tmp_path))
    assert not stale.exists() and live.exists()


def test_https_mirrors_come_first():
    for spec in loader.DATASETS.values():
        schemes = [m.split(":")[0] for m in spec["mirrors"]]
        assert schemes == sorted(schemes, key=lambda s: s != "https")


# -- 4, 8, 9, 10, 11. wrong numbers and tracebacks in the library -----------------------------------------
def test_a_nan_is_never_the_best_model(tmp_path):
    ckpt = callbacks.ModelCheckpoint(tmp_path / "best.npz", monitor="loss", save_best_only=True)
    stop = callbacks.EarlyStopping(monitor="loss", patience=1)
    ckpt.set_model(small())
    stop.set_model(ckpt.model)
    stop.on_train_begin()
    for epoch, value in enumerate([0.5, float("nan"), 0.7]):
        ckpt.on_epoch_end(epoch, {"loss": value})
        stop.on_epoch_end(epoch, {"loss": value})
    assert ckpt.best == 0.5 and stop.best == 0.5 and stop.stopped_epoch == 2


def test_empty_data_is_not_a_perfect_score():
    ae = small()
    x = data()
    with pytest.raises(ValueError, match="evaluate got no samples"):
        ae.evaluate(x[:0], x[:0])
    with pytest.raises(ValueError, match="validation_data holds no samples"):
        ae.fit(x, x, validation_data=(x[:0], x[:0]), verbose=0)


def test_binary_crossentropy_refuses_targets_outside_0_1():
    inp = Input(shape=(6,))
    model = Model(inp, Dense(6, activation="sigmoid")(inp))
    model.compile("adam", "binary_crossentropy")
    x = data() * 255  # the classic forgotten / 255
    with pytest.raises(ValueError, match=r"targets y must lie in \[0, 1\], got values in \[.*\] \(images in 0..255"):
        model.fit(x, x, verbose=0)
    with pytest.raises(ValueError, match="must lie in"):
        model.evaluate(x, x)


@pytest.mark.parametrize("call,error,message", [
    (lambda: Dense(3, dtype="float16"), ValueError, "dtype must be 'float32' or 'float64', got float16"),
    (lambda: Sequential().summary(), ValueError, "has not been built yet"),
    (lambda: Sequential([Dense(2)]).summary(), ValueError, "has not been built yet"),
    (lambda: small().fit(data(), data(), validation_data=data(), verbose=0), ValueError,
     "validation_data must be a tuple"),
    (lambda: small().fit(data(), data(), callbacks=5, verbose=0), TypeError, "callbacks must be a list"),
    (lambda: small().fit(data(), data(), seed=-1, verbose=0), ValueError, "seed must be a non-negative int"),
    (lambda: Dense(True), ValueError, "units must be a positive int, got True"),
    (lambda: optimizers.Adam(beta_1=1.0), ValueError, r"beta_1 must be a finite number in \[0, 1\)"),
    (lambda: optimizers.Adam(learning_rate=float("nan")), ValueError, "learning_rate must be a finite number"),
    (lambda: small().save(""), ValueError, "empty path"),
    (lambda: small().save("m.keras"), ValueError, "names a Keras format"),
])
def test_bad_calls_are_one_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_mixed_dtypes_in_one_model_are_a_clear_error():
    inp = Input(shape=(4,))
    model = Model(inp, Dense(3, dtype="float64")(Dense(4)(inp)))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="must share one dtype"):
        model.fit(np.zeros((4, 4)), np.zeros((4, 3)), verbose=0)


def test_a_checkpoint_path_naming_an_unknown_key_fails_before_training(tmp_path):
    ae, x = small(), data()
    seen = []

    class Count(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    with pytest.raises(ValueError, match=r"names \['nope'\], which this fit does not log"):
        ae.fit(x, x, verbose=0, callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "ck-{nope}.npz")), Count()])
    assert seen == []


def test_the_default_optimizer_exists():
    inp = Input(shape=(3,))
    m = Model(inp, Dense(3)(inp))
    m.compile(loss="mse")  # Keras's default optimizer, rmsprop
    m.fit(np.zeros((4, 3)), np.zeros((4, 3)), verbose=0)


def test_npae_autoencoders_needs_no_explicit_import():
    out = subprocess.run([sys.executable, "-c", "import npae; print(npae.autoencoders.vanilla)"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "function vanilla" in out.stdout


@settings(max_examples=40, deadline=None)
@given(batch_size=st.one_of(st.none(), st.integers(-3, 40), st.floats(-1, 40), st.booleans(), st.text(max_size=2)),
       epochs=st.one_of(st.integers(-2, 3), st.floats(-1, 3), st.none()),
       split=st.one_of(st.floats(-1, 2), st.just(float("nan")), st.just(0.0), st.integers(-1, 2)))
def test_fuzzed_fit_arguments_train_or_raise_one_clear_error(batch_size, epochs, split):
    ae, x = small(), data(20)
    try:
        h = ae.fit(x, x, batch_size=batch_size, epochs=epochs, validation_split=split, verbose=0)
    except (ValueError, TypeError, NotImplementedError) as err:
        assert str(err) and "Traceback" not in str(err)
        return
    assert len(h.history.get("loss", [])) == (epochs or 0) and all(np.isfinite(w).all() for w in ae.get_weights())


# -- 5, 6, 7, 13, 15. the command line: runs, interruptions, kills ------------------------------------------
COMMON = ["--dataset", "mnist", "--limit", "256", "--batch-size", "64", "--verbose", "0"]


def run_cli(args, env_root, timeout=600):
    env = {**os.environ, "NPAE_DATA_DIR": str(env_root)}
    return subprocess.run([sys.executable, "-m", "npae", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def weights_of(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if k.startswith(("weight_", "opt_"))}


def test_training_into_a_folder_that_holds_a_run_is_refused(data_env, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", "vanilla", "--epochs", "1", "--out", out, *COMMON]) == 0
    before = {p.name: p.read_bytes() for p in Path(out).iterdir()}
    capsys.readouterr()
    assert cli.main(["train", "vanilla", "--epochs", "1", "--out", out, *COMMON]) == 2
    err = capsys.readouterr().err
    assert "holds an earlier run" in err and "--resume" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in Path(out).iterdir()} == before  # nothing touched
    assert cli.main(["train", "vanilla", "--epochs", "1", "--out", out, "--overwrite", *COMMON]) == 0


def test_ctrl_c_mid_epoch_then_resume_equals_an_unbroken_run(data_root, tmp_path):
    args = ["train", "convolutional", "--epochs", "2", *COMMON]
    whole = run_cli([*args, "--out", str(tmp_path / "whole")], data_root)
    assert whole.returncode == 0, whole.stderr
    code = ("import os, signal, sys\n"
            "from npae import cli, callbacks\n"
            "class Stop(callbacks.Callback):\n"
            "    def on_train_batch_end(self, batch, logs=None):\n"
            "        if self.params['steps'] and batch == 1 and not getattr(self, 'done', False) and "
            "os.path.exists(sys.argv[1] + '/checkpoint.npz'):\n"
            "            self.done = True; os.kill(os.getpid(), signal.SIGINT)\n"
            "import npae.models as m\n"
            "orig = m.Model.fit\n"
            "def fit(self, *a, callbacks=None, **k):\n"
            "    return orig(self, *a, callbacks=[*(callbacks or []), Stop()], **k)\n"
            "m.Model.fit = fit\n"
            "sys.exit(cli.main(sys.argv[2:]))\n")
    out = str(tmp_path / "cut")
    env = {**os.environ, "NPAE_DATA_DIR": str(data_root)}
    cut = subprocess.run([sys.executable, "-c", code, out, *args, "--out", out], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=600)
    assert cut.returncode == 130, cut.stderr
    assert "interrupted: 1 of 2 epochs finished" in cut.stderr
    assert json.loads((Path(out) / "progress.json").read_text())["epochs_done"] == 1
    assert not (Path(out) / "model.npz").exists()
    again = run_cli([*args, "--out", out, "--resume"], data_root)
    assert again.returncode == 0, again.stderr
    a, b = weights_of(tmp_path / "whole" / "model.npz"), weights_of(Path(out) / "model.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_a_kill_between_the_checkpoint_and_progress_json_resumes_right(data_env, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "vanilla", "--out", str(out), *COMMON]
    assert cli.main([*args, "--epochs", "3"]) == 0
    whole = weights_of(out / "model.npz")
    assert cli.main([*args, "--epochs", "2", "--overwrite"]) == 0
    progress = json.loads((out / "progress.json").read_text())
    progress["epochs_done"] = 1  # as if killed after checkpoint.npz was replaced, before progress.json was
    (out / "progress.json").write_text(json.dumps(progress))
    (out / "model.npz").unlink()
    assert cli.main([*args, "--epochs", "3", "--resume"]) == 0
    assert "resuming vanilla at epoch 3 of 3" in capsys.readouterr().out  # the checkpoint's count wins
    resumed = weights_of(out / "model.npz")
    for k in whole:
        np.testing.assert_array_equal(whole[k], resumed[k], err_msg=k)


@pytest.mark.parametrize("damage,message", [
    (lambda m: m.update(progress=[1]), "no progress record"),
    (lambda m: m["progress"].pop("epochs_done"), "epochs_done must be a whole number"),
    (lambda m: m["progress"].update(epochs_done="x"), "epochs_done must be a whole number"),
    (lambda m: m["progress"].update(epochs_done=-3), "epochs_done must be a whole number"),
    (lambda m: m["progress"].update(epochs_done=4.5), "epochs_done must be a whole number"),
    (lambda m: m["progress"].update(seconds="x"), "seconds must be a number"),
    (lambda m: m["progress"]["history"].update(loss=[]), "the history does not hold"),
])
def test_resume_from_a_damaged_checkpoint_record_is_one_clear_error(data_env, tmp_path, capsys, damage, message):
    out = tmp_path / "run"
    assert cli.main(["train", "vanilla", "--epochs", "1", "--out", str(out), *COMMON]) == 0
    path = out / "checkpoint.npz"
    arrays = entries(path)
    config = json.loads(str(arrays["npae_config"]))
    damage(config["metadata"])
    arrays["npae_config"] = np.array(json.dumps(config))
    np.savez(path, **arrays)
    capsys.readouterr()
    assert cli.main(["train", "vanilla", "--epochs", "2", "--out", str(out), "--resume", *COMMON]) == 2
    err = capsys.readouterr().err
    assert err.startswith("npae: error: --resume") and message in err and "Traceback" not in err


@pytest.mark.parametrize("argv,message", [
    (["train", "vanilla", "--out", "{file}"], "is a file, not a folder"),
    (["predict", "{npy}", "--out", "{dir}"], "not a zip archive"),
    (["predict", "{conv}", "--out", "{dir}", "--dataset", "mnist"], "reconstructs 28x28 images"),
    (["bench", "--out", "{file}"], "is a file, not a folder"),
])
def test_cli_input_errors_are_one_line(argv, message, data_env, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    np.save(tmp_path / "x.npy", np.zeros(3))
    inp = Input(shape=(5,))
    Model(inp, Dense(5)(inp)).save(tmp_path / "conv.npz")
    values = {"file": str(tmp_path / "file"), "npy": str(tmp_path / "x.npy"), "dir": str(tmp_path / "d"),
              "conv": str(tmp_path / "conv.npz")}
    assert cli.main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("npae: error:") and message in err and "Traceback" not in err


def test_predict_uses_the_data_set_the_model_was_trained_on(data_env, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "vanilla", "--epochs", "1", "--out", str(out), "--dataset", "fashion-mnist",
                     "--limit", "128", "--verbose", "0"]) == 0
    assert load_model(out / "model.npz").metadata["dataset"] == "fashion-mnist"
    capsys.readouterr()
    assert cli.main(["predict", str(out / "model.npz"), "--out", str(tmp_path / "p")]) == 0
    assert "fashion-mnist test images" in capsys.readouterr().out
    assert cli.main(["predict", str(out / "model.npz"), "--out", str(tmp_path / "p"), "--dataset", "mnist"]) == 0
    assert "was trained on fashion-mnist; predicting on mnist" in capsys.readouterr().err


def test_fewer_than_ten_test_images(data_env, tmp_path):
    assert cli.main(["train", "vanilla", "--epochs", "1", "--out", str(tmp_path / "r"), "--dataset", "mnist",
                     "--limit", "6", "--verbose", "0"]) == 0
    assert (tmp_path / "r" / "reconstructions.png").is_file()


def test_a_killed_writers_temporary_files_are_removed_by_the_next_run(data_env, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / f".tmp-{dead.pid}-abc.part").write_bytes(b"half a checkpoint")
    assert cli.main(["train", "vanilla", "--epochs", "1", "--out", str(out), *COMMON]) == 0
    assert not list(out.glob(".tmp-*"))


def test_saving_keeps_a_files_permissions_and_names_the_target_on_failure(tmp_path):
    ae = small()
    path = tmp_path / "m.npz"
    ae.save(path)
    path.chmod(0o600)
    ae.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(OSError, match="cannot write '.*missing/m.npz'"):
        ae.save(tmp_path / "missing" / "m.npz")
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        ae.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temporary file left


def test_ctrl_c_outside_fit_exits_130(data_root, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time, sys\nfrom npae import cli\n"
                             "import npae.cli as c\n"
                             "c.cmd_summary = lambda args: time.sleep(60)\n"
                             "sys.exit(cli.main(['summary', 'vanilla']))"], stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "npae: interrupted" in err and "Traceback" not in err


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.sampled_from(["train", "predict", "gradcheck", "summary", "bench", "vanilla", "deep", "x",
                                      "--epochs", "--batch-size", "--seed", "--limit", "--out", "--dataset",
                                      "--optimizer", "-3", "0", "1e9", "", "mnist", "--resume", "--quick",
                                      "--overwrite", "--no-jit", "--version-x"]), max_size=6))
def test_fuzzed_command_lines_never_show_a_traceback(argv, capsys):
    if argv[:1] in (["train"], ["bench"], ["gradcheck"], ["predict"]) and len(argv) >= 2 and \
            not any(a in ("-3", "0", "1e9", "", "x", "--version-x") for a in argv):
        return  # (a valid command would really run: the other tests do that)
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("npae: error:"), err


# -- 14. the Numba cache ---------------------------------------------------------------------------------
def test_an_unusable_numba_cache_costs_a_compile_not_the_run(tmp_path):
    """A truncated index file, a full disk while saving, and no writable cache folder at all: each
    runs uncached with one warning naming the fix."""
    code = r"""
import os, sys, warnings
warnings.simplefilter("always")
os.environ["NUMBA_CACHE_DIR"] = sys.argv[1]
import numpy as np
from npae.fast import runtime
mode = sys.argv[2]
if mode == "nolocator":
    import numba.core.caching as caching
    def refuse(self, py_func):
        raise RuntimeError("cannot cache function: no locator available for file")
    caching.FunctionCache.__init__ = refuse
if mode == "full":
    import errno
    import numba.core.caching as caching
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    caching.IndexDataCacheFile.save = full
@runtime.parallel
def twice(x):
    return 2 * x
print(twice(np.arange(3.0)).tolist())
"""
    cache = tmp_path / "cache"
    script = tmp_path / "kernel.py"  # (a kernel is cached only when its source is a file)
    script.write_text(code)
    env = {**os.environ, "PYTHONWARNINGS": "always"}

    def run(mode):
        return subprocess.run([sys.executable, str(script), str(cache), mode], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=300)

    first = run("plain")
    assert first.returncode == 0 and first.stdout.strip() == "[0.0, 2.0, 4.0]", first.stderr
    index = [p for p in cache.rglob("*.nbi")]
    assert index, "the cache was not written"
    for p in index:
        p.write_bytes(p.read_bytes()[:10])  # truncated
    for mode, fix in (("plain", "delete that folder"), ("full", "free some disk space"),
                      ("nolocator", "set NUMBA_CACHE_DIR")):
        res = run(mode)
        assert res.returncode == 0 and res.stdout.strip() == "[0.0, 2.0, 4.0]", (mode, res.stderr)
        assert fix in res.stderr and res.stderr.count("npae:") == 1, (mode, res.stderr)
