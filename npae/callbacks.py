"""Callbacks with Keras's names: hooks that ``fit`` calls around epochs and batches.

Order of calls: on_train_begin, then per epoch on_epoch_begin, per batch on_train_batch_begin(step)
and on_train_batch_end(step, logs) (which calls the older on_batch_end unless overridden), then
on_epoch_end(epoch, logs) with ``loss``, each compiled metric and, with validation data, their
``val_`` twins; finally on_train_end. A callback may set ``model.stop_training`` or change a
layer's ``trainable`` (it takes effect at the next batch).

    History, ProgbarLogger (verbose 1 and 2), TerminateOnNaN, EarlyStopping, ReduceLROnPlateau,
    ModelCheckpoint, CSVLogger, TensorBoard (per-epoch scalars)
"""

from __future__ import annotations

import collections
import csv
import math
import os
import string
import sys
import time
import warnings

import numpy as np

from . import metrics as npae_metrics
from .checks import non_negative_int, number, pop_keras_only

__all__ = ["verbosity", "Callback", "History", "ProgbarLogger", "EarlyStopping", "ReduceLROnPlateau",
           "ModelCheckpoint", "CSVLogger", "TerminateOnNaN", "TensorBoard", "CallbackList"]


class Callback:
    """Base class; ``self.model`` is set before training starts."""

    model = None
    params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        """What fit tells every callback: verbose, epochs, steps and the keys it logs (Keras's)."""
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None):
        """Keras's name; calls :meth:`on_batch_begin` (the older one) unless overridden."""
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        """Keras's name; calls :meth:`on_batch_end` (the older one) unless overridden."""
        self.on_batch_end(batch, logs)


class History(Callback):
    """``history.history`` maps 'loss' / 'val_loss' to per-epoch lists; ``history.epoch`` the epochs."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.stopped_reason: str | None = None
        self.interrupted = False  # set by fit when Ctrl-C stopped it

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))


def verbosity(verbose, where: str) -> int:
    """Keras's ``verbose``: "auto" (1), 0 (silent), 1 (a progress bar) or 2 (one line per epoch);
    True and False are 1 and 0, as in Keras."""
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    if not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
        raise ValueError(f"{where}: verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


class ProgbarLogger(Callback):
    """Keras-like progress: ``12/235 [=>....] - ETA: 3s - loss: 0.1234`` redrawn in place on a
    terminal (verbose=1), or one summary line per epoch (verbose=2, or output not a terminal).
    ``epochs=None``: one pass without an "Epoch i/n" line (evaluate, predict). ``steps=None``: the
    number of batches is not known (a generator without steps_per_epoch): ``12/Unknown``."""

    def __init__(self, verbose: int = 1, epochs: int | None = 1, steps: int | None = 1, stream=None):
        self.verbose, self.epochs, self.steps = verbose, epochs, steps
        self._done = 0
        self.stream = stream or sys.stdout
        self.live = verbose == 1 and getattr(self.stream, "isatty", lambda: False)()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last_draw = time.perf_counter()
        self._recent = collections.deque([(0, self._start)], maxlen=20)  # (batches done, time): the ETA's window
        self._after_first = None
        if self.verbose and self.epochs is not None:
            self.stream.write(f"Epoch {epoch + 1}/{self.epochs}\n")

    def _bar(self, done: int) -> str:
        if self.steps is None:
            return f"{done}/Unknown"
        width = 30
        fill = int(width * done / self.steps)
        arrow = ">" if done < self.steps else "="
        return f"{done}/{self.steps} [" + "=" * max(fill - 1, 0) + (arrow if fill else "") + "." * (width - fill) + "]"

    def on_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self._done = batch + 1
        if batch == 0:
            self._after_first = now
        if not self.live:
            return
        self._recent.append((batch + 1, now))
        if now - self._last_draw < 0.1 and (self.steps is None or batch + 1 < self.steps):
            return
        self._last_draw = now
        # the pace of the last 20 batches: the first batches of a run are slower (kernels loading
        # or compiling, or the reference path while the fast path compiles) and should not
        # inflate the ETA
        (done0, t0), (done1, t1) = self._recent[0], self._recent[-1]
        shown = "".join(f" - {k}: {v:.4f}" for k, v in (logs or {}).items())
        if self.steps is None:
            self.stream.write(f"\r{self._bar(batch + 1)}{shown}")
        else:
            eta = (t1 - t0) / max(done1 - done0, 1) * (self.steps - batch - 1)
            self.stream.write(f"\r{self._bar(batch + 1)} - ETA: {eta:.0f}s{shown}")
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        if not self.verbose:
            return
        now = time.perf_counter()
        took = now - self._start
        steps = self.steps if self.steps is not None else max(self._done, 1)
        # per step: the batches after the first (which may have waited for the compiler), where
        # there are such batches (the epoch's total time includes the first)
        after = getattr(self, "_after_first", None)
        per_step = (now - after) / (steps - 1) if steps > 1 and after is not None else took / steps
        metrics = "".join(f" - {k}: {v:.4f}" for k, v in (logs or {}).items())
        prefix = ("\r" + f"{steps}/{steps} [" + "=" * 30 + "] - ") if self.live else f"{steps}/{steps} - "
        self.stream.write(f"{prefix}{took:.0f}s {1000 * per_step:.0f}ms/step{metrics}\n")
        self.stream.flush()


class TerminateOnNaN(Callback):
    """Stop training at the first NaN or inf loss. Unlike Keras, the offending batch is not
    applied: the model keeps the weights from before it. ``fit`` always includes one."""

    def check(self, epoch: int, batch: int, loss: float) -> bool:
        if math.isfinite(loss):
            return True
        msg = (f"TerminateOnNaN: loss is {loss} at epoch {epoch + 1}, batch {batch + 1}; training stopped "
               "and that batch was not applied (the weights are those from before it)")
        print(msg, file=sys.stderr, flush=True)
        if self.model is not None:
            self.model.stop_training = True
            self.reason = msg
        return False


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs; with
    ``restore_best_weights`` the best epoch's weights are put back at the end."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, mode: str = "auto",
                 restore_best_weights: bool = False, verbose: int = 0, **kwargs):
        pop_keras_only("EarlyStopping", kwargs, {"baseline": None, "start_from_epoch": 0}, strict=True)
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor, self.min_delta, self.patience = monitor, abs(min_delta), patience
        self.sign = -1.0 if mode == "max" or (mode == "auto" and "acc" in monitor) else 1.0
        self.restore_best_weights, self.verbose = restore_best_weights, verbose
        self.stopped_epoch = 0

    def on_train_begin(self, logs=None):
        self.wait, self.best, self.best_weights, self.best_epoch = 0, math.inf, None, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"EarlyStopping: metric {self.monitor!r} is not available (have {sorted(logs or {})})",
                          stacklevel=2)
            return
        score = self.sign * value
        if _improves(value, self.best - self.min_delta, self.sign):
            self.best, self.wait, self.best_epoch = score, 0, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience and epoch > 0:  # Keras: patience epochs without improvement
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None and self.stopped_epoch:
            self.model.set_weights(self.best_weights)
        if self.verbose and self.stopped_epoch:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping (best epoch {self.best_epoch + 1})")


class ReduceLROnPlateau(Callback):
    """Keras's ``ReduceLROnPlateau``: multiply the optimizer's learning rate by ``factor`` when
    ``monitor`` has not improved for ``patience`` epochs (not below ``min_lr``), then wait
    ``cooldown`` epochs before counting again.

    At each epoch's end (Keras's rules): the learning rate in use is logged as "learning_rate"
    (History keeps it, the progress line shows it); the first value of ``monitor`` is the best so
    far; a value improves on the best by more than ``min_delta`` (below it in mode "min", above
    in "max"); an epoch in cooldown counts down and does not wait; after ``patience`` epochs
    without improvement the rate becomes max(rate * factor, min_lr), if it was above min_lr,
    and the cooldown starts. Mode "auto" minimises a loss and every metric but the accuracies; a
    metric function of your own needs mode "min" or "max". The new rate sets
    ``model.optimizer.learning_rate``, which every update reads: it holds from the next batch on.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"ReduceLROnPlateau: monitor must be the name of a logged value, e.g. 'val_loss', got "
                             f"{monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.factor = number(factor, "ReduceLROnPlateau: factor", 0.0, 1.0, high_open=True)
        self.patience = non_negative_int(patience, "ReduceLROnPlateau: patience")
        self.verbose = verbosity(verbose, "ReduceLROnPlateau")
        self.min_delta = abs(number(min_delta, "ReduceLROnPlateau: min_delta"))
        self.cooldown = non_negative_int(cooldown, "ReduceLROnPlateau: cooldown")
        self.min_lr = number(min_lr, "ReduceLROnPlateau: min_lr", 0.0)
        self.sign: float | None = None if mode == "auto" else (1.0 if mode == "min" else -1.0)
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"ReduceLROnPlateau: {self.monitor!r} is not logged (have {sorted(logs)}): the learning rate "
                          "is left as it is", stacklevel=2)
            return
        if self.sign is None:
            self.sign = _direction(self.monitor, "ReduceLROnPlateau")
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self.best is None or _improves(current, self.sign * self.best - self.min_delta, self.sign):
            self.best, self.wait = float(current), 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old = float(optimizer.learning_rate)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    optimizer.learning_rate = new
                    if self.verbose:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


_MAXIMISED = ("accuracy", "acc", "binary_accuracy", "categorical_accuracy")


def _direction(monitor: str, who: str) -> float:
    """Mode "auto": 1.0 (smaller is better) for a loss and npae's error metrics, -1.0 for the
    accuracies, as Keras decides from its metrics; a name npae does not know is a clear error."""
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("_loss"):
        return 1.0
    for known in sorted(npae_metrics.NAMES, key=len, reverse=True):  # (an output's metric: "<output>_<name>")
        if name.lower() == known or name.lower().endswith("_" + known):
            return -1.0 if known in _MAXIMISED else 1.0
    raise ValueError(f"{who}: cannot tell whether {monitor!r} should go down or up (mode='auto'); pass mode='min' or "
                     "mode='max'")


def _improves(value, best, sign: float) -> bool:
    """Whether ``value`` beats ``best`` (sign 1: smaller is better, -1: larger). NaN never does
    (Keras compares with np.less / np.greater, which are False for NaN)."""
    return bool(np.less(sign * value, best))


class ModelCheckpoint(Callback):
    """Save the model after each epoch (or only when ``monitor`` improves), atomically. ``filepath``
    may contain ``{epoch}`` and log keys, e.g. ``'ckpt-{epoch:02d}-{val_loss:.3f}.npz'`` (checked
    when training starts); ``save_weights_only`` writes the weights alone (no optimizer state)."""

    def __init__(self, filepath, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto", save_freq="epoch",
                 initial_value_threshold=None):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ModelCheckpoint: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if save_freq != "epoch":
            raise NotImplementedError(f"ModelCheckpoint: save_freq={save_freq!r} is not supported by npae "
                                      "(only 'epoch')")
        self.filepath, self.monitor, self.save_best_only = os.fspath(filepath), monitor, bool(save_best_only)
        if not self.filepath:
            raise ValueError("ModelCheckpoint: filepath is empty")
        self.save_weights_only = bool(save_weights_only)
        self.sign = -1.0 if mode == "max" or (mode == "auto" and "acc" in monitor) else 1.0
        self.best = math.inf if initial_value_threshold is None else self.sign * float(initial_value_threshold)
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        keys = {"epoch", *getattr(self, "params", {}).get("metrics", [])}
        try:
            fields = {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(self.filepath)
                      if name}
        except ValueError as err:
            raise ValueError(f"ModelCheckpoint: filepath {self.filepath!r} is not a valid format string: {err}") \
                from None
        unknown = sorted(fields - keys)
        if unknown and "metrics" in getattr(self, "params", {}):
            raise ValueError(f"ModelCheckpoint: filepath {self.filepath!r} names {unknown}, which this fit does not "
                             f"log; it can use {sorted(keys)}")
        if self.save_best_only and "metrics" in getattr(self, "params", {}) and \
                self.monitor not in self.params["metrics"]:
            warnings.warn(f"ModelCheckpoint: {self.monitor!r} is not logged by this fit (it logs "
                          f"{self.params['metrics']}): no model will be saved", stacklevel=2)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None or not _improves(value, self.best, self.sign):
                return
            self.best = self.sign * value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved {'weights' if self.save_weights_only else 'model'} to {path}")


class CSVLogger(Callback):
    """Write one row per epoch (epoch, loss, val_loss, ...) to ``filename``, flushed every epoch."""

    def __init__(self, filename, separator: str = ",", append: bool = False):
        self.filename, self.sep, self.append = os.fspath(filename), separator, append
        self._file = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer, self._header_done = csv.writer(self._file, delimiter=self.sep), exists

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self._header_done:
            self._keys = sorted(logs)
            self._writer.writerow(["epoch", *self._keys])
            self._header_done = True
        keys = getattr(self, "_keys", sorted(logs))
        self._writer.writerow([epoch, *(logs.get(k, "") for k in keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


def _same(value, default) -> bool:
    """Whether an argument is at its default (None compared by identity; arrays never are)."""
    if default is None:
        return value is None
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):
        return False


class TensorBoard(Callback):
    """Per-epoch scalars (loss, val_loss) for TensorBoard, under ``log_dir/train`` and
    ``log_dir/validation`` like Keras. Writes real event files with the optional ``tensorboardX``
    package (``pip install npae[tensorboard]``); without it, warns once and writes the same scalars
    to ``log_dir/scalars.csv`` so the tutorial's programs still run on a bare install.

    Keras's arguments, in its order. What they ask for beyond the per-epoch scalars (histograms,
    images, embeddings, profiles, per-batch updates) is not written, and a value other than
    Keras's default says so in a warning (the run goes on: they only change what is logged);
    ``write_graph`` is accepted either way, and no graph is written (npae has no graph to show)."""

    _warned = False

    def __init__(self, log_dir: str = "logs", histogram_freq: int = 0, write_graph: bool = True,
                 write_images: bool = False, write_steps_per_second: bool = False, update_freq="epoch",
                 profile_batch=0, embeddings_freq: int = 0, embeddings_metadata=None):
        asked = {"histogram_freq": (histogram_freq, 0), "write_images": (write_images, False),
                 "write_steps_per_second": (write_steps_per_second, False), "update_freq": (update_freq, "epoch"),
                 "profile_batch": (profile_batch, 0), "embeddings_freq": (embeddings_freq, 0),
                 "embeddings_metadata": (embeddings_metadata, None)}
        for name, (value, default) in asked.items():
            if not _same(value, default):
                warnings.warn(f"TensorBoard: {name}={value!r} is not supported by npae: it writes per-epoch "
                              "scalars only", stacklevel=2)
        self.log_dir = os.fspath(log_dir)

    def on_train_begin(self, logs=None):
        os.makedirs(self.log_dir, exist_ok=True)
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            if not TensorBoard._warned:
                warnings.warn("TensorBoard: the optional package tensorboardX is not installed; writing "
                              f"scalars to {os.path.join(self.log_dir, 'scalars.csv')} instead "
                              "(pip install 'npae[tensorboard]' for event files)", stacklevel=2)
                TensorBoard._warned = True
            self._writers = None
            self._csv = CSVLogger(os.path.join(self.log_dir, "scalars.csv"))
            self._csv.on_train_begin()
            return
        self._writers = {"train": SummaryWriter(os.path.join(self.log_dir, "train")),
                         "validation": SummaryWriter(os.path.join(self.log_dir, "validation"))}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writers is None:
            self._csv.on_epoch_end(epoch, logs)
            return
        for key, value in logs.items():
            which, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writers[which].add_scalar(f"epoch_{tag}", float(value), epoch)
        for w in self._writers.values():
            w.flush()

    def on_train_end(self, logs=None):
        if self._writers is None:
            self._csv.on_train_end()
        else:
            for w in self._writers.values():
                w.close()


class CallbackList:
    """The callbacks of one ``fit``: the user's, then History, the progress bar and TerminateOnNaN
    (Keras's order: History records what the user's callbacks add to the logs, e.g.
    ReduceLROnPlateau's "learning_rate")."""

    def __init__(self, callbacks, model, verbose: int, epochs: int, steps: int | None,
                 metrics: list[str] | None = None):
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"callbacks must be a list of npae.callbacks.Callback instances, got "
                            f"{type(callbacks).__name__}")
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be npae.callbacks.Callback instances, got {type(cb).__name__}")
        self.history = History()
        self.nan_guard = next((c for c in callbacks if isinstance(c, TerminateOnNaN)), None) or TerminateOnNaN()
        extra = [ProgbarLogger(verbose, epochs, steps)] if verbose else []
        self.callbacks = [*callbacks, self.history, *extra]
        if self.nan_guard not in self.callbacks:
            self.callbacks.append(self.nan_guard)
        params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        if metrics is not None:
            params["metrics"] = list(metrics)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def on_batch_loss(self, epoch: int, batch: int, loss: float) -> bool:
        """False (and training stops) when the loss is not finite."""
        ok = self.nan_guard.check(epoch, batch, loss)
        if not ok:
            self.history.stopped_reason = self.nan_guard.reason
        return ok

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args):
            for cb in self.callbacks:
                getattr(cb, hook)(*args)
        return call

