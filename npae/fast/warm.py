"""Compiling the fast path's kernels ahead, in a process of its own, while the first run starts on
the reference path.

Numba compiles each kernel for this CPU the first time it runs and caches it on disk. For the
convolutional autoencoder that is about a minute of compiling, once per machine, before the first
batch. With ``jit_compile="auto"`` (Keras's default) a model whose kernels are not compiled yet
does not wait: a background process (``python -m npae.warmup``) builds the same model and runs
every mode of its plan on a tiny batch, which compiles and caches the kernels, while the model's
batches run on the NumPy reference path (:mod:`npae.reference`: the same numbers, to rounding).
When the background process is done it leaves a marker, and the next batch runs on the fast path,
loading the kernels from the cache. Later runs find the marker and start on the fast path at once.
``jit_compile=True`` never starts on the reference path: it compiles in the foreground, as do
``NPAE_BACKGROUND_COMPILE=0`` and a model the background process cannot rebuild (a custom layer),
saying so before the first batch and leaving the marker after it. Where nothing can be cached,
every run compiles in the foreground (and :mod:`npae.fast.runtime` says why).

The marker's name is a hash of what decides which kernels run: each plan's steps (their kinds,
algorithms and the layers' configurations and shapes, not the layers' names), the dtype, the loss,
the Numba version, the CPU and the fast path's source files' modification times (as Numba's own
cache keys do).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no background compile (every run compiles in the foreground)
    fcntl = None

import numba

from ..reference import ReferencePath
from . import runtime
from .path import FastPath

__all__ = ["ENV", "CHILD_ENV", "LOCK", "BUSY", "warm_folder", "plan_key", "hold_lock", "WarmingPath", "ForegroundPath",
           "fast_path_for"]

ENV = "NPAE_BACKGROUND_COMPILE"  # "0": compile in the foreground, never start on the reference path
CHILD_ENV = "NPAE_COMPILING_AHEAD"  # set in the background process (its models compile plainly)
LOCK = "compiling.lock"  # held (flock) by the background process that is compiling
BUSY = 3  # the background process's exit status when another one holds the lock
MAX_SECONDS = 900.0  # a background process running longer is given up on: the run compiles itself
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent.parent  # the folder holding this npae package: the background process imports it
_announced = False


def warm_folder() -> Path | None:
    """Where markers and the background process's lock and log live: beside Numba's cache of
    npae's kernels (NUMBA_CACHE_DIR, else the package's __pycache__, else the user cache), or
    None where no folder is writable."""
    candidates = []
    if os.environ.get("NUMBA_CACHE_DIR"):
        candidates.append(Path(os.environ["NUMBA_CACHE_DIR"]) / "npae-warm")
    candidates.append(_HERE / "__pycache__" / "npae-warm")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates.append(Path(cache) / "npae" / "warm")
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            return folder
        except OSError:
            continue
    return None


def _cpu() -> str:
    try:
        import llvmlite.binding as llvm

        return llvm.get_host_cpu_name()
    except Exception:  # noqa: BLE001 - any failure: a key without the CPU is still a key
        return "?"


def _step_key(step) -> list:
    """What of a step decides its kernels: its kind and options, and every layer it runs (type,
    configuration without the name, input shape)."""
    layers = [step.layer, *getattr(step, "layers", ()), getattr(step, "pool", None), getattr(step, "relu", None)]
    return [type(step).__name__, str(getattr(step, "algo", "")), getattr(step, "up", None), step.grad_is_dz,
            step.logits, step.needs_dx, step.training, getattr(step, "through_relu", False),
            [[type(layer).__name__, {k: v for k, v in layer.get_config().items() if k != "name"}, layer.input_shape]
             for layer in layers if layer is not None]]


def plan_key(path: FastPath, optimizer=None) -> str:
    """The hash naming the kernels ``path``'s plans (and ``optimizer``'s update) run (see the
    module docstring)."""
    parts = [numba.__version__, _cpu(), sorted((p.name, p.stat().st_mtime_ns) for p in _HERE.glob("*.py"))]
    for mode in ("train", "evaluate", "predict"):
        plan = path.plan(mode)
        parts.append([_step_key(step) for step in plan.steps])
        parts.append([loss.describe() for loss in plan.losses])
    if optimizer is not None:  # which update kernels run: the class and its slots (not its rates)
        parts.append([type(optimizer).__name__, list(optimizer.slot_names()), getattr(optimizer, "nesterov", None)])
    parts.append(str(path.dtype))
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:24]


def hold_lock(folder: Path) -> int | None:
    """Take the folder's compile lock (an flock, released by the kernel when its holder exits,
    however it exits); the open descriptor, or None if another process holds it. (Read-only: a
    lock file another user created, in a cache folder they share, locks as well.)"""
    fd = os.open(folder / LOCK, os.O_CREAT | os.O_RDONLY, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class _Warmer:
    """The markers of one folder, and this run's background process (one compiles at a time,
    across all runs: the flock in ``compiling.lock``)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.waiting_since: float | None = None  # when this run first found the kernels not ready
        self.spec: Path | None = None  # the description the running process builds (its log beside it)

    def ready(self, key: str) -> bool:
        return (self.folder / f"{key}.ready").exists()

    def mark(self, key: str, kind: str, note: str) -> None:
        """Leave the marker ``key.ready`` or ``key.failed``."""
        try:
            (self.folder / f"{key}.{kind}").write_text(note + "\n")
        except OSError:
            pass

    def failed(self, key: str) -> bool:
        return (self.folder / f"{key}.failed").exists()

    def running(self) -> bool:
        """Whether a background process (this run's or another's) is compiling now."""
        try:
            fd = hold_lock(self.folder)
        except OSError:
            return False
        if fd is None:
            return True
        os.close(fd)  # (closing releases the flock)
        return False

    def start(self, key: str, description: dict) -> bool:
        """Start the background process for ``key`` unless one is running (then it waits its
        turn); True if one runs now."""
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
        if self.proc is not None and self.proc.poll() is None or self.running():
            return True
        try:
            spec = self.folder / f"{key}.{os.getpid()}.json"  # (per run: two runs never share a file)
            spec.write_text(json.dumps(description))
            # run in the folder holding this npae, with it first on the path: the process compiles
            # this npae's kernels, whatever the caller's working directory or sys.path holds
            path = os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            with open(spec.with_suffix(".log"), "wb") as log:
                self.proc = subprocess.Popen([sys.executable, "-m", "npae.warmup", str(spec), key, str(self.folder)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env={**os.environ, CHILD_ENV: "1", "PYTHONPATH": path}, cwd=_ROOT,
                                             start_new_session=True, close_fds=True)
            self.spec = spec
            self.started = time.monotonic()
            return True
        except OSError:
            return False

    def gave_up(self, key: str) -> bool:
        """Whether to stop waiting: this run's background process exited without a marker (a
        crash, a kill: the ``.failed`` marker is left here, with its log's end), or this run has
        waited longer than MAX_SECONDS (for its own process, which is then stopped, or for
        another run's). Exit status 3 means another process held the lock: not a failure."""
        if self.waiting_since is not None and time.monotonic() - self.waiting_since > MAX_SECONDS:
            self.stop()
            return True
        if self.proc is None:
            return False
        code = self.proc.poll()  # (also reaps it: no zombie)
        if code is None:
            return False
        self.proc = None
        if code == BUSY or self.ready(key) or self.failed(key):
            return False
        log = self.spec.with_suffix(".log")
        try:
            tail = log.read_text(errors="replace")[-2000:]
            log.unlink()
        except OSError:
            tail = ""
        self.mark(key, "failed", f"the background process exited with status {code} without a marker\n{tail}")
        return True

    def stop(self) -> None:
        """Stop this run's background process (its whole session: it runs in one of its own)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.proc = None


def _announce(background: bool) -> None:
    global _announced
    if not _announced:
        _announced = True
        where = ("in the background (once per machine, about a minute); meanwhile batches run on the NumPy "
                 "reference path, which gives the same numbers to within rounding") if background else \
            "before the first batch (once per machine, up to a minute)"
        print(f"npae: compiling the fast path's kernels for this CPU {where}", file=sys.stderr, flush=True)


class ForegroundPath(FastPath):
    """A fast path whose kernels are compiled here, as they are first used (jit_compile=True,
    NPAE_BACKGROUND_COMPILE=0, a model the background process cannot rebuild): says so before
    the first batch, and leaves the marker after the first training step (its kernels, and the
    optimizer's, are compiled then)."""

    def __init__(self, flat, heads, warmer: _Warmer, key: str):
        super().__init__(flat, heads)
        self.warmer, self.key, self._marked = warmer, key, False

    def gradients(self, xs, ys, grads, outputs=None):
        if not self._marked:
            _announce(False)
        return super().gradients(xs, ys, grads, outputs)

    def step(self, optimizer, params, grads):
        super().step(optimizer, params, grads)
        if not self._marked:
            self._marked = True
            self.warmer.mark(self.key, "ready", "compiled in the foreground")


class WarmingPath:
    """A fast path whose kernels are being compiled in the background: every call runs on the
    reference path until they are ready, then on the fast path. The interface of FastPath."""

    def __init__(self, fast: FastPath, warmer: _Warmer, key: str, description: dict):
        self.fast, self.warmer, self.key, self.description = fast, warmer, key, description
        self.reference = ReferencePath(fast.flat, fast.heads)
        self._ready = False

    @property
    def dtype(self):
        return self.fast.dtype

    def _current(self):
        """The fast path once its kernels are compiled, else the reference path (starting the
        background process again if it is not running: one compiles at a time). Where the
        background process failed, or takes too long, the fast path compiles here (where any
        error is seen)."""
        if self._ready:
            return self.fast
        warmer, key = self.warmer, self.key
        if warmer.ready(key) or warmer.failed(key) or warmer.gave_up(key) or not warmer.start(key, self.description):
            self._ready = True
            return self.fast
        return self.reference

    @property
    def warming(self) -> bool:
        """Whether calls still run on the reference path."""
        return self._current() is self.reference

    def plan(self, mode: str):
        return self.fast.plan(mode)

    def workspace(self, mode: str):
        return self.fast.workspace(mode)

    def gradients(self, xs, ys, grads, outputs=None):
        path = self._current()
        if path is not self.fast:
            _announce(True)  # training is where the wait would show; a prediction runs quietly
        return path.gradients(xs, ys, grads, outputs)

    def loss_value(self, xs, ys, training=False, outputs=None):
        return self._current().loss_value(xs, ys, training, outputs)

    def predict(self, xs, outs):
        return self._current().predict(xs, outs)

    def step(self, optimizer, params, grads):
        return self._current().step(optimizer, params, grads)

    def gather(self, src, idx, out):
        return self._current().gather(src, idx, out)


def fast_path_for(flat, heads, description: dict | None, background: bool, optimizer=None):
    """The fast path for a model's graph and losses (and ``optimizer``, whose update kernels
    count too): a FastPath where its kernels are compiled already (the marker is there), where
    nothing can be cached, or in the background process itself; a WarmingPath where a background
    process can compile them (``background``: jit_compile "auto" and NPAE_BACKGROUND_COMPILE not
    "0"; ``description``: the model's get_config(), None where it cannot be rebuilt); else a
    ForegroundPath."""
    if (not runtime.CACHING or fcntl is None or os.environ.get(CHILD_ENV)
            or (folder := warm_folder()) is None):
        return FastPath(flat, heads)
    warmer = _Warmer(folder)
    fast = FastPath(flat, heads)
    try:
        key = plan_key(fast, optimizer)
    except (TypeError, ValueError):
        return fast
    if warmer.ready(key):
        return fast
    if (background and description is not None and os.environ.get(ENV, "1") != "0" and not warmer.failed(key)
            and warmer.start(key, description)):
        return WarmingPath(fast, warmer, key, description)
    return ForegroundPath(flat, heads, warmer, key)
