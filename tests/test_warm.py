"""The first run on a machine: with jit_compile="auto" a model whose kernels are not compiled yet
starts on the reference path while a background process compiles them, and later runs start on
the fast path. Each run is a process of its own with an empty Numba cache (NUMBA_CACHE_DIR)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from npae.fast.warm import BUSY, hold_lock
from npae.warmup import main as warmup_main

SCRIPT = """
import json, sys, time
import numpy as np

import npae
from npae.layers import Dense

rng = np.random.default_rng(0)
x = rng.random((512, 64)).astype(np.float32)
npae.set_random_seed(1)
model = npae.Sequential([npae.Input((64,)), Dense(16, activation="relu"), Dense(64, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=sys.argv[1] == "1" or "auto")
start = time.perf_counter()
history = model.fit(x, x, epochs=2, batch_size=64, shuffle=False, verbose=0)
took = time.perf_counter() - start
print(json.dumps({"loss": history.history["loss"], "seconds": took}))
"""


def run(cache: Path, *, background: str = "1", force_jit: bool = False) -> tuple[dict, str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "NPAE_BACKGROUND_COMPILE": background}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "1" if force_jit else "0"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def wait_for(folder: Path, pattern: str, seconds: float) -> list[Path]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = list(folder.glob(pattern))
        if found:
            return found
        time.sleep(0.5)
    return []


def test_a_cold_first_run_starts_on_the_reference_path_and_later_runs_on_the_fast_path(tmp_path):
    cache = tmp_path / "numba-cache"
    first, err = run(cache)
    assert "compiling the fast path's kernels for this CPU in the background" in err
    warm = cache / "npae-warm"
    ready = wait_for(warm, "*.ready", 400)
    assert ready, f"the background process left no marker; its log: {[p.read_text() for p in warm.glob('*.log')]}"
    assert not list(warm.glob("*.failed"))
    deadline = time.monotonic() + 30
    while (lock := hold_lock(warm)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lock is not None  # the background process has ended: its lock is free
    os.close(lock)
    assert not list(warm.glob("*.json")) and not list(warm.glob("*.log"))  # it cleaned up after itself

    second, err2 = run(cache)
    assert "in the background" not in err2  # the kernels are there: no message, no new process
    assert not list(warm.glob("*.json")) and len(list(warm.glob("*.ready"))) == 1
    # the reference path and the fast path trained the same model to within float32 rounding
    np.testing.assert_allclose(first["loss"], second["loss"], rtol=1e-4)
    # and the first run did not wait for the compiler: it trained two epochs on the reference
    # path in less time than the background process took to compile
    compiled_in = float(ready[0].read_text().split()[2])
    assert first["seconds"] < compiled_in, (first["seconds"], compiled_in)


def test_background_compile_can_be_switched_off(tmp_path):
    cache = tmp_path / "numba-cache"
    _, err = run(cache, background="0")
    assert "in the background" not in err and "before the first batch" in err
    assert not list((cache / "npae-warm").glob("*.json"))


def test_jit_compile_true_never_starts_on_the_reference_path_but_says_it_compiles(tmp_path):
    cache = tmp_path / "numba-cache"
    first, err = run(cache, force_jit=True)
    assert "in the background" not in err
    assert "compiling the fast path's kernels for this CPU before the first batch" in err
    assert not list((cache / "npae-warm").glob("*.json"))  # no background process was started
    assert list((cache / "npae-warm").glob("*.ready"))
    # the marker it left means a later run (jit_compile="auto") starts on the fast path, silently
    second, err2 = run(cache)
    assert "compiling" not in err2
    np.testing.assert_allclose(first["loss"], second["loss"], rtol=1e-6)


def test_a_second_background_process_waits_its_turn(tmp_path):
    # one compiles at a time: while another process holds the lock, warmup exits at once with
    # BUSY and writes nothing (the run it serves starts it again later)
    lock = hold_lock(tmp_path)
    assert lock is not None
    try:
        spec = tmp_path / "k.json"
        spec.write_text("{}")
        assert warmup_main([str(spec), "k", str(tmp_path)]) == BUSY
        assert not list(tmp_path.glob("k.ready")) and not list(tmp_path.glob("k.failed"))
        assert not spec.exists()  # (the run that started it writes a new one when it tries again)
    finally:
        os.close(lock)


def test_a_background_process_that_cannot_build_the_model_leaves_a_failed_marker(tmp_path):
    spec = tmp_path / "k.json"
    spec.write_text(json.dumps({"class_name": "NoSuchModel", "config": {}}))
    assert warmup_main([str(spec), "k", str(tmp_path)]) == 1
    assert (tmp_path / "k.failed").read_text().strip() and not (tmp_path / "k.ready").exists()
    assert not spec.exists()
