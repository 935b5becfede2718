"""The ``npae`` command: train, gradcheck, summary, predict and bench the six autoencoders.

    npae train convolutional --dataset fashion-mnist --epochs 5 --out runs/conv
    npae gradcheck deep
    npae summary sparse
    npae predict runs/conv/model.npz --out runs/conv
    npae bench --quick

Bad arguments print one line starting with ``npae: error:`` and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .callbacks import Callback

__all__ = ["main"]

MODELS = ("vanilla", "multilayer", "deep", "convolutional", "sparse", "denoising")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2 (argparse would print the usage too)
        print(f"npae: error: {message} (see 'npae --help')", file=sys.stderr)
        raise SystemExit(2)


class UsageError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number >= 1, got 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="npae", description="npae: the six classic MNIST autoencoders in NumPy + Numba")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train one of the six autoencoders and write model, history and figures")
    t.add_argument("model", choices=MODELS)
    t.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    t.add_argument("--epochs", type=_non_negative, help="default: the tutorial's")
    t.add_argument("--batch-size", type=_positive, help="default: the tutorial's")
    t.add_argument("--optimizer", choices=("adam", "adadelta", "sgd"))
    t.add_argument("--loss", choices=("mse", "binary_crossentropy", "binary_crossentropy_clipped"))
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data-dir", help="a folder holding mnist/ and fashion-mnist/ (IDX files)")
    t.add_argument("--limit", type=_positive, help="train on the first N training images only")
    t.add_argument("--out", default=None, help="output folder (default runs/MODEL)")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    t.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT/checkpoint.npz (saved after every epoch)")
    t.add_argument("--no-jit", action="store_true",
                   help="run on the NumPy reference path (compile(jit_compile=False)) instead of the fast path")
    g = sub.add_parser("gradcheck", help="float64 finite-difference check of a whole model")
    g.add_argument("model", choices=MODELS)
    g.add_argument("--full", action="store_true", help="every element instead of random projections")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-jit", action="store_true", help="check the NumPy reference path instead of the fast path")
    s = sub.add_parser("summary", help="print a model's layers, shapes and parameter counts")
    s.add_argument("model", choices=MODELS)
    r = sub.add_parser("predict", help="reconstruct test images with a saved model and draw the figure")
    r.add_argument("model_file")
    r.add_argument("--out", required=True)
    r.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    r.add_argument("--data-dir")
    b = sub.add_parser("bench", help="training/prediction throughput vs PyTorch and TensorFlow if installed")
    b.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    b.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    b.add_argument("--out", default=os.path.join("runs", "bench"), help="folder for results.json and results.md")
    b.add_argument("--baseline", help="a folder holding another npae (e.g. a checkout of the commit before a "
                   "change), run as one more engine, alternated with this one")
    b.add_argument("--no-epoch", action="store_true", help="skip the 60,000-sample epoch in fresh processes")
    b.add_argument("--tf-python", help="a Python with tensorflow + keras for the TF-Keras peer "
                   "(default: $NPAE_BENCH_TF_PYTHON, else this one)")
    return p


def _load(dataset: str, data_dir, split: str):
    from .datasets import DatasetNotFoundError, IDXError, load_split, to_float

    try:
        x, y = load_split(dataset, split, data_dir=data_dir)
    except (DatasetNotFoundError, IDXError) as err:
        raise UsageError(str(err).splitlines()[0]) from None
    return to_float(x), y


def _shape_for(model, x):
    return x.reshape((len(x), *model.input_shape[1:]))


def cmd_train(args) -> int:
    from . import autoencoders, plots
    from .callbacks import CSVLogger
    from .datasets import add_noise

    settings = {**autoencoders.DEFAULTS[args.model]}
    for key in ("epochs", "batch_size", "optimizer", "loss"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    out = args.out or os.path.join("runs", args.model)
    x_train, _ = _load(args.dataset, args.data_dir, "train")
    x_test, y_test = _load(args.dataset, args.data_dir, "test")
    if args.limit:
        x_train = x_train[: args.limit]
    os.makedirs(out, exist_ok=True)
    ae, encoder, _ = autoencoders.BUILDERS[args.model](optimizer=settings["optimizer"], loss=settings["loss"],
                                                       seed=args.seed)
    if args.no_jit:
        ae.compile(optimizer=ae.optimizer, loss=ae.loss, jit_compile=False)
    x_train, x_test = _shape_for(ae, x_train), _shape_for(ae, x_test)
    inputs_train, inputs_test = x_train, x_test
    if args.model == "denoising":
        inputs_train, inputs_test = add_noise(x_train, seed=args.seed), add_noise(x_test, seed=args.seed + 1)
    done, before, past = _resume(args, ae, out, settings) if args.resume else (0, 0.0, {})
    start = time.perf_counter()
    history = ae.fit(inputs_train, x_train, epochs=settings["epochs"], batch_size=settings["batch_size"],
                     validation_data=(inputs_test, x_test), seed=args.seed, verbose=args.verbose,
                     initial_epoch=done,
                     callbacks=[CSVLogger(os.path.join(out, "history.csv"), append=args.resume),
                                _Checkpoint(out, settings, args, before, start)])
    took = before + time.perf_counter() - start
    if history.interrupted:
        finished = done + len(history.epoch)
        print(f"npae: interrupted: {finished} of {settings['epochs']} epochs finished and checkpointed in {out}/; "
              f"continue with: npae train {args.model} --resume --out {out}", file=sys.stderr)
        return 130
    history.history = {key: past.get(key, []) + history.history.get(key, [])  # earlier runs' epochs first
                       for key in {**past, **history.history}}
    history.epoch = list(range(done)) + history.epoch
    ae.save(os.path.join(out, "model.npz"))
    rows, labels = [x_test, ae.predict(inputs_test[:10])], ["original", "reconstructed"]
    if args.model == "denoising":
        rows, labels = [x_test, inputs_test, rows[1]], ["clean", "noisy", "denoised"]
    plots.plot_reconstructions(rows, labels, os.path.join(out, "reconstructions.png"))
    if history.history.get("loss"):
        plots.plot_history(history.history, os.path.join(out, "loss.png"), title=f"{args.model} on {args.dataset}")
    n_codes = min(len(x_test), 2000)
    plots.plot_codes(encoder.predict(inputs_test[:n_codes], batch_size=256), y_test[:n_codes],
                     os.path.join(out, "codes.png"), title=f"{args.model}: test codes by label")
    plots.plot_filters(ae.layers[1].get_weights()[0], os.path.join(out, "filters.png"))
    summary = {
        "model": args.model, "dataset": args.dataset, "settings": {**settings, "seed": args.seed,
                                                                    "train_samples": len(x_train)},
        "parameters": ae.count_params(), "epochs_run": len(history.epoch),
        "final": {k: v[-1] for k, v in history.history.items()},
        "history": history.history, "seconds": round(took, 3),
    }
    from .saving import atomic_write

    atomic_write(os.path.join(out, "summary.json"), lambda f: f.write(json.dumps(summary, indent=2).encode()))
    final = ", ".join(f"{k} {v:.4f}" for k, v in summary["final"].items())
    print(f"trained {args.model} for {len(history.epoch)} epochs in {took:.1f}s ({final}); wrote {out}/")
    return 0


class _Checkpoint(Callback):
    """After every epoch: OUT/checkpoint.npz (model and optimizer state) and OUT/progress.json (the
    epochs done, the seconds spent, the settings), both written atomically, for ``--resume``."""

    def __init__(self, out, settings, args, before, start):
        self.out, self.before, self.start = out, before, start
        self.run = _run_settings(args, settings)

    def on_epoch_end(self, epoch, logs=None):
        from .saving import atomic_write

        self.model.save(os.path.join(self.out, "checkpoint.npz"))
        progress = {"epochs_done": epoch + 1, "seconds": self.before + time.perf_counter() - self.start,
                    "run": self.run}
        atomic_write(os.path.join(self.out, "progress.json"), lambda f: f.write(json.dumps(progress).encode()))


def _run_settings(args, settings) -> dict:
    """What a checkpoint records of the run, and what --resume must find unchanged (but epochs)."""
    return {"model": args.model, "dataset": args.dataset, "seed": args.seed, "limit": args.limit, **settings}


def _resume(args, ae, out, settings):
    """Load OUT's checkpoint into ``ae``; returns (epochs done, seconds spent, history so far)."""
    import csv

    from .saving import ModelFileError

    try:
        with open(os.path.join(out, "progress.json")) as f:
            progress = json.load(f)
        with open(os.path.join(out, "history.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError) as err:
        raise UsageError(f"--resume: no readable checkpoint in {out}/ ({err})") from None
    saved = {k: v for k, v in progress.get("run", {}).items() if k != "epochs"}
    now = {k: v for k, v in _run_settings(args, settings).items() if k != "epochs"}
    if saved != now:
        diff = ", ".join(f"{k}: {saved.get(k)!r} vs {now.get(k)!r}" for k in sorted(set(saved) | set(now))
                         if saved.get(k) != now.get(k))
        raise UsageError(f"--resume: {out}/ holds a run with other settings (saved vs now: {diff})")
    done = int(progress["epochs_done"])
    if len(rows) < done:
        raise UsageError(f"--resume: {out}/history.csv has {len(rows)} epochs, the checkpoint {done}")
    try:
        ae.load_weights(os.path.join(out, "checkpoint.npz"))
    except ModelFileError as err:
        raise UsageError(f"--resume: {err}") from None
    rows = rows[:done]
    with open(os.path.join(out, "history.csv"), "w", newline="") as f:  # drop rows past the checkpoint
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["epoch"])
        writer.writeheader()
        writer.writerows(rows)
    past = {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {}) if k != "epoch"}
    print(f"resuming {args.model} at epoch {done + 1} of {settings['epochs']} from {out}/checkpoint.npz")
    return done, float(progress["seconds"]), past


def cmd_gradcheck(args) -> int:
    import numpy as np

    from . import autoencoders
    from .gradcheck import check_model

    ae, _, _ = autoencoders.BUILDERS[args.model](seed=args.seed)
    rng = np.random.default_rng(args.seed)
    x = rng.uniform(0.05, 0.95, (2, *ae.input_shape[1:]))
    start = time.perf_counter()
    report = check_model(ae, x, x, mode="full" if args.full else "projection", seed=args.seed,
                         raise_on_failure=False, jit_compile=not args.no_jit)
    print(report.table())
    verdict = "passed" if report.passed else "FAILED"
    path = "reference path" if args.no_jit else "fast path"
    print(f"gradcheck {args.model}: {verdict} on the {path} (float64, eps {report.eps:g}, atol {report.atol:g}, "
          f"rtol {report.rtol:g}; {time.perf_counter() - start:.1f}s)")
    return 0 if report.passed else 1


def cmd_summary(args) -> int:
    from . import autoencoders

    autoencoders.BUILDERS[args.model](seed=0)[0].summary()
    return 0


def cmd_predict(args) -> int:
    from . import plots
    from .datasets import add_noise
    from .models import load_model
    from .saving import ModelFileError

    try:
        model = load_model(args.model_file)
    except ModelFileError as err:
        raise UsageError(str(err)) from None
    x_test, _ = _load(args.dataset, args.data_dir, "test")
    x_test = _shape_for(model, x_test)
    os.makedirs(args.out, exist_ok=True)
    if model.name.startswith("denoising"):
        noisy = add_noise(x_test[:10], seed=1)
        rows, labels = [x_test, noisy, model.predict(noisy)], ["clean", "noisy", "denoised"]
    else:
        rows, labels = [x_test, model.predict(x_test[:10])], ["original", "reconstructed"]
    path = plots.plot_reconstructions(rows, labels, os.path.join(args.out, "reconstructions.png"))
    loss = model.evaluate(x_test, x_test, batch_size=256) if model.loss and not model.name.startswith("denoising") \
        else None
    print(f"wrote {path}" + (f"; test loss {loss:.4f}" if loss is not None else ""))
    return 0


def cmd_bench(args) -> int:
    from .bench import run_benchmark

    try:
        run_benchmark(args.models, quick=args.quick, out_dir=args.out, tf_python=args.tf_python,
                      baseline=args.baseline, epoch=False if args.no_epoch else None)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"train": cmd_train, "gradcheck": cmd_gradcheck, "summary": cmd_summary, "predict": cmd_predict,
               "bench": cmd_bench}[args.command]
    try:
        return handler(args)
    except UsageError as err:
        print(f"npae: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
