"""The background process that compiles a model's fast-path kernels while the model's first run
starts on the reference path (see :mod:`npae.fast.warm`, which starts it)::

    python -m npae.warmup SPEC KEY FOLDER

It takes FOLDER's compile lock (exit status 3 if another process holds it: one compiles at a
time), builds the model SPEC (a JSON file: the model's get_config(), with its compile settings)
describes, trains it for one step of two samples with its own optimizer on the fast path,
evaluates and predicts, and runs the threaded GEMM once (which compiles and caches every kernel
the model's plans use), then writes FOLDER/KEY.ready and removes SPEC and its log (or writes
FOLDER/KEY.failed with the error, exit status 1). It runs at a lower priority than the run it
serves.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import optimizers
from .fast import blas, warm
from .models import model_from_config
from .models.files import compile_arguments

__all__ = ["main"]


def _compile(description: dict) -> None:
    """Run every kernel the described model's plans use, on tiny data."""
    model = model_from_config(description)
    comp = description.get("compile")
    x = [np.full((2, *t.shape[1:]), 0.5, model.dtype) for t in model.inputs]
    y = [np.full((2, *t.shape[1:]), 0.5, model.dtype) for t in model.outputs]
    if comp is not None:
        model.compile(**{**compile_arguments(comp), "jit_compile": True, "metrics": None})
    else:
        model.compile(optimizer=optimizers.get("adam"), loss="mse", jit_compile=True)
    model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    # a product big enough to be split over the threads, both ways (two samples never are)
    a = np.ones((256, 256), model.dtype)
    for accumulate in (False, True):
        blas.matmul(a, a, np.zeros_like(a), accumulate=accumulate)


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 after writing the ``.ready`` marker, 1 after writing ``.failed``, 2 on a
    wrong command line, 3 when another process holds the lock (nothing written). SPEC, and the
    log beside it (SPEC with the suffix ``.log``: this process's output), are removed however it
    ends, but for a crash (the run that started it reads the log's end then)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m npae.warmup SPEC KEY FOLDER", file=sys.stderr)
        return 2
    spec, key, folder = Path(args[0]), args[1], Path(args[2])
    try:
        return _run(spec, key, folder)
    finally:
        for leftover in (spec, spec.with_suffix(".log")):
            try:
                leftover.unlink()
            except OSError:
                pass


def _run(spec: Path, key: str, folder: Path) -> int:
    try:
        description = json.loads(spec.read_text())
        lock = warm.hold_lock(folder)  # held until this process exits, however it exits
    except (OSError, ValueError) as err:
        return _failed(folder, key, err)
    if lock is None:
        return warm.BUSY
    try:
        os.nice(10)
    except OSError:
        pass
    start = time.perf_counter()
    try:
        _compile(description)
    except Exception as err:  # noqa: BLE001 - recorded; the run it serves then compiles in the foreground
        return _failed(folder, key, err)
    (folder / f"{key}.ready").write_text(f"compiled in {time.perf_counter() - start:.1f} s\n")
    return 0


def _failed(folder: Path, key: str, err: Exception) -> int:
    try:
        (folder / f"{key}.failed").write_text(f"{type(err).__name__}: {err}\n")
    except OSError:
        pass
    return 1


if __name__ == "__main__":
    sys.exit(main())
