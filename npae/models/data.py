"""The data a model is given, put in its order: one array per input and per output, checked.

``fit``, ``evaluate`` and ``predict`` take what Keras takes: an array for a one-input model; a
list (in the model's order) or a dict (by input name) for several inputs; the same for targets
(by output name). ``fit`` and ``evaluate`` also take a Python generator or any iterable of
batches ``(x, y)``, and a Keras-style sequence (``__len__`` and ``__getitem__`` returning
batches): :class:`Batches`.
"""

from __future__ import annotations

import itertools
import signal
import sys
import threading
import warnings

import numpy as np

from .. import callbacks as cbks

__all__ = ["is_batches", "Batches", "Sums", "StopOnInterrupt", "split_off", "pass_bar"]


def _is_array_like(value) -> bool:
    return isinstance(value, (np.ndarray, list, tuple, dict, int, float, np.generic)) or hasattr(value, "__array__")


def is_batches(value) -> bool:
    """Whether ``value`` is a source of batches (a generator, an iterator, an iterable or a
    sequence of batches) rather than arrays."""
    if value is None or _is_array_like(value) or isinstance(value, (str, bytes)):
        return False
    return hasattr(value, "__next__") or hasattr(value, "__iter__") or (
        hasattr(value, "__getitem__") and hasattr(value, "__len__"))


class Batches:
    """The batches of a generator, iterable or sequence, ``steps`` of them per epoch (None: until
    it is exhausted; a sequence: its length). A generator goes on where the last epoch stopped,
    as in Keras; an iterable that is not an iterator (a list of batches, a sequence) starts again
    each epoch."""

    def __init__(self, source, steps: int | None, what: str):
        self.source, self.what = source, what
        self.sequence = (hasattr(source, "__getitem__") and hasattr(source, "__len__")
                         and not hasattr(source, "__next__"))
        self.steps = steps if steps is not None else (len(source) if self.sequence else None)
        self.one_shot = hasattr(source, "__next__")
        self._iterator = iter(source) if self.one_shot else None
        self.exhausted = False

    def epoch(self):
        """The batches of one epoch, each as given (a tuple (x, y), or x alone)."""
        if self.sequence:
            indices = range(self.steps if self.steps is not None else len(self.source))
            return (self.source[i % len(self.source)] for i in indices)
        it = self._iterator if self.one_shot else iter(self.source)
        return self._count(it)

    def _count(self, it):
        taken = 0
        while self.steps is None or taken < self.steps:
            try:
                batch = next(it)
            except StopIteration:
                if self.steps is not None or taken == 0:
                    self.exhausted = True
                    if taken < (self.steps or 1):
                        warnings.warn(f"{self.what}: the data ran out after {taken} batches of this epoch "
                                      f"(steps: {self.steps}); training stops, as in Keras. Give a generator that "
                                      "loops (while True: ...) or fewer steps", stacklevel=4)
                return
            taken += 1
            yield batch

    def peek(self):
        """The first batch (put back: the first epoch still starts with it)."""
        if self.sequence:
            return self.source[0]
        if self.one_shot:
            try:
                first = next(self._iterator)
            except StopIteration:
                raise ValueError(f"{self.what}: the generator yields no batches") from None
            self._iterator = itertools.chain([first], self._iterator)
            return first
        try:
            return next(iter(self.source))
        except StopIteration:
            raise ValueError(f"{self.what}: the data holds no batches") from None


def split_batch(batch, what: str):
    """(x, y) from a batch: a tuple (x, y), (x, y, None), or x alone (y None)."""
    if isinstance(batch, tuple):
        if len(batch) == 2:
            return batch
        if len(batch) == 3:
            if batch[2] is not None:
                raise NotImplementedError(f"{what}: batches with sample weights (x, y, sample_weight) are not "
                                          "supported by npae")
            return batch[0], batch[1]
        if len(batch) == 1:
            return batch[0], None
        raise ValueError(f"{what}: a batch must be (x, y) or (x, y, sample_weight), got a tuple of {len(batch)}")
    return batch, None


def split_off(xs: list, ys: list, fraction, validation_data):
    """Keras's validation_split: the last ``fraction`` of the samples, before any shuffling."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fit: validation_split must be a number in (0, 1), got {fraction!r}")
    if validation_data is not None:
        warnings.warn("fit: validation_data is given, so validation_split is not used", stacklevel=3)
        return xs, ys, validation_data
    n = len(xs[0])
    cut = int(n * (1 - fraction))
    if cut == 0 or cut == n:
        raise ValueError(f"fit: validation_split={fraction} of {n} samples leaves an empty training or validation set")
    train_x = [x[:cut] for x in xs]
    # an autoencoder's target is its input (fit(x, x)): it stays the same array, gathered once per batch
    train_y = [None if a is None else train_x[0] if a is xs[0] else a[:cut] for a in ys]
    return train_x, train_y, ([x[cut:] for x in xs], [None if a is None else a[cut:] for a in ys])


class Sums:
    """Running sums of the loss, each output's loss and the metrics over the samples of an epoch
    (or an evaluation), each batch weighted by its size."""

    def __init__(self, loss_names: list[str], metrics: list[list]):
        self.loss_names, self.metrics = loss_names, metrics
        self.loss, self.n = 0.0, 0
        self.heads = [0.0] * len(loss_names)
        self.values = [[0.0] * len(ms) for ms in metrics]
        self.counts = [[0] * len(ms) for ms in metrics]

    def add(self, losses, n: int, ys: list, outputs: list) -> None:
        """Add one batch of ``n`` samples: its :class:`npae.paths.Losses`, targets and outputs (per
        output; None where an output has no metric)."""
        self.loss += losses.total * n
        self.n += n
        if self.loss_names:
            for i, v in enumerate(losses.heads):
                self.heads[i] += v * n
        for k, metrics in enumerate(self.metrics):
            for i, metric in enumerate(metrics):
                total, count = metric.batch_sum(ys[k], outputs[k])
                self.values[k][i] += total
                self.counts[k][i] += count

    def means(self) -> dict[str, float]:
        logs = {"loss": self.loss / max(self.n, 1)}
        logs.update({name: v / max(self.n, 1) for name, v in zip(self.loss_names, self.heads)})
        for metrics, values, counts in zip(self.metrics, self.values, self.counts):
            logs.update({m.name: v / max(c, 1) for m, v, c in zip(metrics, values, counts)})
        return logs


def pass_bar(verbose: int, steps: int | None):
    """The progress bar of one evaluate or predict pass, or None when silent (or with no batch)."""
    if not verbose or steps == 0:
        return None
    bar = cbks.ProgbarLogger(verbose, epochs=None, steps=steps)
    bar.on_epoch_begin(0)
    return bar


class StopOnInterrupt:
    """During fit, the first Ctrl-C asks to stop after the current batch (weights stay consistent);
    a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._saved = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nInterrupted: stopping after the current batch (press Ctrl-C again to abort now)",
              file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._saved = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            signal.signal(signal.SIGINT, self._saved)
        return False
