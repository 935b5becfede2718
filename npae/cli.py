"""The ``npae`` command: train, gradcheck, summary, predict and bench the six autoencoders.

    npae train convolutional --dataset fashion-mnist --epochs 5 --out runs/conv
    npae gradcheck deep
    npae summary sparse
    npae predict runs/conv/model.npz --out runs/conv
    npae bench --quick

Bad arguments and bad input print ``npae: error: ...`` (the problem on the first line, any detail
indented below it) and exit with code 2; Ctrl-C exits with code 130, saying what was kept.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from .callbacks import Callback

__all__ = ["main", "build_parser", "MODELS"]

MODELS = ("vanilla", "multilayer", "deep", "convolutional", "sparse", "denoising", "transposed", "unet")
DENOISERS = ("denoising", "unet")  # trained on noisy images against the clean ones
DATASETS = ("mnist", "fashion-mnist")
RUN_FILES = ("model.npz", "checkpoint.npz", "progress.json", "history.csv", "summary.json")
NOISE = 0.5  # the denoising tutorial's noise factor: x + 0.5 N(0, 1), clipped to [0, 1]
ENVIRONMENT = """environment variables:
  NPAE_DATA_DIR     a folder holding mnist/ and fashion-mnist/ (IDX files, .gz or not); searched
                    before the cache (~/.cache/npae or $XDG_CACHE_HOME/npae) and
                    /usr/share/datasets, after which the files are downloaded and verified
  XDG_CACHE_HOME    where the data set cache lives (default ~/.cache)
  NUMBA_NUM_THREADS how many cores the fast path uses (default: all)

exit codes: 0 done, 1 a failed check (npae gradcheck), 2 bad arguments or input, 130 interrupted"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every help line (where the help does not say it already), and the epilog as
    written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or "default:" in text or action.default is argparse.SUPPRESS:
            return text  # a default of None is described in words ("default: the tutorial's ...")
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2 (argparse would print the usage too)
        print(f"npae: error: {message} (see 'npae {self.prog.split()[-1]} --help')"
              if " " in self.prog else f"npae: error: {message} (see 'npae --help')", file=sys.stderr)
        raise SystemExit(2)


class UsageError(Exception):
    """A problem with the user's input: printed as ``npae: error: ...``, exit code 2."""


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _non_negative(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _folder(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder name, got an empty one")
    return text


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="npae", description="npae: the six classic MNIST autoencoders in NumPy + Numba, with "
                "hand-written forward and backward passes.", epilog=ENVIRONMENT, formatter_class=_Formatter)
    p.add_argument("--version", action="version", version=f"npae {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    t = sub.add_parser("train", help="train one of the eight autoencoders; write the model, its history and figures",
                       description="Train one of the eight autoencoders (the tutorial's six, transposed, and the "
                       "U-Net denoiser unet) "
                       "with their settings and write model.npz, history.csv, summary.json and the figures "
                       "(loss, reconstructions, codes, filters) into OUT. After every epoch OUT/checkpoint.npz "
                       "holds everything needed to continue (--resume) with the same result as an unbroken run.",
                       epilog=ENVIRONMENT, formatter_class=_Formatter)
    t.add_argument("model", choices=MODELS)
    t.add_argument("--dataset", choices=DATASETS, default="mnist",
                   help="the images to train on (found or downloaded as described below)")
    t.add_argument("--epochs", type=_non_negative, help="passes over the training set (default: the tutorial's: "
                   "50 for vanilla, multilayer, convolutional; 100 for deep, sparse, denoising; 20 for transposed; "
                   "10 for unet)")
    t.add_argument("--batch-size", type=_positive, help="samples per step (default: the tutorial's: 256 for the "
                   "dense models, 128 for the convolutional ones, transposed and unet)")
    t.add_argument("--optimizer", choices=("adam", "adadelta", "rmsprop", "sgd"), help="default: the tutorial's "
                   "(adam for vanilla, multilayer, sparse, transposed, unet; adadelta for the others)")
    t.add_argument("--loss", choices=("mse", "mae", "binary_crossentropy", "binary_crossentropy_clipped"),
                   help="default: the tutorial's (mse, or binary_crossentropy for deep, convolutional, "
                   "denoising, transposed, unet). binary_crossentropy on a sigmoid output is computed from the logits, "
                   "as TensorFlow does; binary_crossentropy_clipped clips the probabilities instead")
    t.add_argument("--seed", type=_non_negative, default=0,
                   help="seeds the initial weights, the shuffling and the denoisers' noise: the same seed "
                   "gives the same run")
    t.add_argument("--data-dir", help="a folder holding mnist/ and fashion-mnist/ (searched first)")
    t.add_argument("--limit", type=_positive, help="use only the first N images of the training set and of the "
                   "test set (for a quick try)")
    t.add_argument("--out", type=_folder, default=None, help="output folder (default: runs/MODEL)")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="0: silent; 1: a progress bar per epoch; 2: one line per epoch")
    t.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint")
    t.add_argument("--overwrite", action="store_true", help="start afresh in an OUT that holds an earlier run")
    t.add_argument("--no-jit", action="store_true",
                   help="run on the NumPy reference path (compile(jit_compile=False)) instead of the fast path")

    g = sub.add_parser("gradcheck", help="float64 finite-difference check of a whole model",
                       description="Check every gradient of a model against central differences in float64.",
                       formatter_class=_Formatter)
    g.add_argument("model", choices=MODELS)
    g.add_argument("--full", action="store_true", help="every element instead of random projections")
    g.add_argument("--seed", type=_non_negative, default=0, help="seeds the weights, the data and the projections")
    g.add_argument("--no-jit", action="store_true", help="check the NumPy reference path instead of the fast path")

    s = sub.add_parser("summary", help="print a model's layers, shapes and parameter counts",
                       formatter_class=_Formatter)
    s.add_argument("model", choices=MODELS)

    r = sub.add_parser("predict", help="reconstruct test images with a saved model and draw the figure",
                       description="Reconstruct test images with a model saved by npae train, draw them and print "
                       "the test loss.", epilog=ENVIRONMENT, formatter_class=_Formatter)
    r.add_argument("model_file")
    r.add_argument("--out", type=_folder, required=True, help="folder for reconstructions.png")
    r.add_argument("--dataset", choices=DATASETS, help="default: the one the model was trained on")
    r.add_argument("--data-dir", help="a folder holding mnist/ and fashion-mnist/ (searched first)")
    r.add_argument("--limit", type=_positive, help="use only the first N test images")
    r.add_argument("--no-jit", action="store_true", help="run on the NumPy reference path")

    b = sub.add_parser("bench", help="training/prediction throughput against PyTorch, TF-Keras and another npae",
                       formatter_class=_Formatter)
    b.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    b.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    b.add_argument("--out", type=_folder, default=os.path.join("runs", "bench"),
                   help="folder for results.json and results.md")
    b.add_argument("--baseline", help="a folder holding another npae (e.g. a checkout of the commit before a "
                   "change), run as one more engine, alternated with this one")
    b.add_argument("--no-epoch", action="store_true", help="skip the 60,000-sample epoch in fresh processes")
    b.add_argument("--tf-python", help="a Python with tensorflow + keras for the TF-Keras peer "
                   "(default: $NPAE_BENCH_TF_PYTHON, else this one)")
    return p


# -- data ------------------------------------------------------------------------------------------
def _load(dataset: str, data_dir, split: str, limit: int | None):
    """Images as float32 in [0, 1] (n, 28, 28) and labels; every data error is a UsageError that
    keeps the library's whole message (where it looked, what each mirror said, what to do)."""
    from .datasets import DatasetNotFoundError, IDXError, load_split, to_float

    try:
        x, y = load_split(dataset, split, data_dir=data_dir)
    except (DatasetNotFoundError, IDXError, ValueError) as err:
        raise UsageError(str(err)) from None
    if limit:
        x, y = x[:limit], y[:limit]
    if len(x) == 0:
        raise UsageError(f"the {dataset} {split} set holds no images")
    return to_float(x), y


def _noisy(x, seed: int, factor: float = NOISE):
    from .datasets import add_noise

    return add_noise(x, factor, seed=seed)


def _prepare_out(out: str, make: bool = True) -> str:
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out!r} is a file, not a folder")
    if make:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as err:
            raise UsageError(f"cannot create the output folder {out!r}: {err.strerror or err}") from None
        if not os.access(out, os.W_OK):
            raise UsageError(f"cannot write into the output folder {out!r} (read-only?)")
    return out


# -- train -----------------------------------------------------------------------------------------
def _settings(args) -> dict:
    from . import autoencoders

    settings = {**autoencoders.DEFAULTS[args.model]}
    for key in ("epochs", "batch_size", "optimizer", "loss"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    return settings


def _run_record(args, settings) -> dict:
    """What a run folder records of the run; --resume must find it unchanged (but the epochs)."""
    return {"model": args.model, "dataset": args.dataset, "seed": args.seed, "limit": args.limit, **settings}


def cmd_train(args) -> int:
    from . import autoencoders
    from .callbacks import CSVLogger
    from .saving import remove_stale_temporaries

    settings = _settings(args)
    out = _prepare_out(args.out or os.path.join("runs", args.model))
    remove_stale_temporaries(out)  # left by a run killed mid-write
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other: choose one")
    earlier = [name for name in RUN_FILES if os.path.exists(os.path.join(out, name))]
    if earlier and not args.resume and not args.overwrite:
        raise UsageError(f"{out}/ holds an earlier run ({', '.join(earlier)}): continue it with --resume, or start "
                         f"afresh with --overwrite (or choose another --out)")
    x_train, _ = _load(args.dataset, args.data_dir, "train", args.limit)
    x_test, y_test = _load(args.dataset, args.data_dir, "test", args.limit)
    ae, encoder, _ = autoencoders.BUILDERS[args.model](optimizer=settings["optimizer"], loss=settings["loss"],
                                                       seed=args.seed)
    if args.no_jit:
        ae.jit_compile = encoder.jit_compile = False
    x_train, x_test = x_train.reshape((len(x_train), *ae.input_shape[1:])), x_test.reshape((len(x_test),
                                                                                             *ae.input_shape[1:]))
    inputs_train, inputs_test = x_train, x_test
    if args.model in DENOISERS:
        inputs_train, inputs_test = _noisy(x_train, args.seed), _noisy(x_test, args.seed + 1)
    record = _run_record(args, settings)
    if args.resume:
        done, before, past = _resume(ae, out, record, settings["epochs"])
    else:
        done, before, past = 0, 0.0, {}
        if args.overwrite:
            for name in RUN_FILES:
                _remove(os.path.join(out, name))
    start = time.perf_counter()
    if done < settings["epochs"] or not args.resume:
        history = ae.fit(inputs_train, x_train, epochs=settings["epochs"], batch_size=settings["batch_size"],
                         validation_data=(inputs_test, x_test), seed=args.seed, verbose=args.verbose,
                         initial_epoch=done,
                         callbacks=[CSVLogger(os.path.join(out, "history.csv"), append=args.resume),
                                    _Checkpoint(out, record, before, start, past)])
        if history.interrupted:
            finished = done + len(history.epoch)
            print(f"npae: interrupted: {finished} of {settings['epochs']} epochs finished and checkpointed in "
                  f"{out}/ (the cut epoch does not count); continue with: npae train {args.model} --resume --out "
                  f"{out}", file=sys.stderr)
            return 130
        history_dict = {k: past.get(k, []) + history.history.get(k, []) for k in {**past, **history.history}}
    else:
        history_dict = past
        print(f"nothing to train: the run in {out}/ has finished its {settings['epochs']} epochs; rewriting its "
              "outputs")
    took = before + time.perf_counter() - start
    metadata = {"dataset": args.dataset, "model": args.model, "noise": NOISE if args.model in DENOISERS else None,
                "settings": record}
    _write_outputs(args, ae, encoder, out, x_test, y_test, inputs_test, history_dict, metadata, took, len(x_train))
    return 0


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise UsageError(f"cannot remove {path}: {err.strerror or err}") from None


def _write_outputs(args, ae, encoder, out, x_test, y_test, inputs_test, history, metadata, took, n_train) -> None:
    from . import plots
    from .datasets import DATASETS as DATA
    from .saving import atomic_write

    try:
        ae.save(os.path.join(out, "model.npz"), metadata=metadata)
        n = min(10, len(x_test))
        rows, labels = [x_test[:n], ae.predict(inputs_test[:n], verbose=0)], ["original", "reconstructed"]
        if args.model in DENOISERS:
            rows, labels = [x_test[:n], inputs_test[:n], rows[1]], ["clean", "noisy", "denoised"]
        title = f"{args.model} autoencoder on {args.dataset} test images"
        plots.plot_reconstructions(rows, labels, os.path.join(out, "reconstructions.png"), title=title)
        if history.get("loss"):
            plots.plot_history(history, os.path.join(out, "loss.png"),
                               title=f"{args.model} on {args.dataset}: loss per epoch ({ae.loss.name})")
        n_codes = min(len(x_test), 2000)
        plots.plot_codes(encoder.predict(inputs_test[:n_codes], batch_size=256, verbose=0), y_test[:n_codes],
                         os.path.join(out, "codes.png"), title=f"{args.model}: codes of {n_codes} test images",
                         class_names=DATA[args.dataset]["classes"])
        first = next(layer for layer in ae.layers if "kernel" in layer.params)  # (a noise layer comes first)
        plots.plot_filters(first.params["kernel"], os.path.join(out, "filters.png"),
                           title=f"{args.model}: first-layer weights ({first.name})")
        summary = {"model": args.model, "dataset": args.dataset,
                   "settings": {**metadata["settings"], "train_samples": n_train}, "parameters": ae.count_params(),
                   "epochs_run": len(history.get("loss", [])), "final": {k: v[-1] for k, v in history.items() if v},
                   "history": history, "seconds": round(took, 3)}
        atomic_write(os.path.join(out, "summary.json"), lambda f: f.write(json.dumps(summary, indent=2).encode()))
    except OSError as err:
        raise UsageError(str(err)) from None
    final = ", ".join(f"{k} {v:.4f}" for k, v in summary["final"].items())
    print(f"trained {args.model} for {summary['epochs_run']} epochs in {took:.1f}s ({final}); wrote {out}/")


class _Checkpoint(Callback):
    """After every epoch: OUT/checkpoint.npz, one atomic record of everything --resume needs (the
    model, the optimizer's state, and as metadata the epochs done, the seconds spent, the history
    and the run's settings), then OUT/progress.json, a readable copy of that metadata."""

    def __init__(self, out, record, before, start, past):
        self.out, self.record, self.before, self.start = out, record, before, start
        self.history = {k: list(v) for k, v in past.items()}

    def on_epoch_end(self, epoch, logs=None):
        from .saving import atomic_write

        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        progress = {"epochs_done": epoch + 1, "seconds": self.before + time.perf_counter() - self.start,
                    "run": self.record, "history": self.history}
        self.model.save(os.path.join(self.out, "checkpoint.npz"), metadata={"progress": progress})
        atomic_write(os.path.join(self.out, "progress.json"), lambda f: f.write(json.dumps(progress).encode()))


def _resume(ae, out, record, epochs) -> tuple[int, float, dict]:
    """Load OUT's checkpoint into ``ae``; returns (epochs done, seconds spent, history so far). The
    checkpoint itself holds the epoch count (one atomic file): progress.json is only a copy."""
    from .models import load_model
    from .saving import ModelFileError

    path = os.path.join(out, "checkpoint.npz")
    if not os.path.isfile(path):
        raise UsageError(f"--resume: no checkpoint in {out}/ (checkpoint.npz is missing)")
    try:
        saved = load_model(path, compile=False)
    except ModelFileError as err:
        raise UsageError(f"--resume: {err}") from None
    progress = (saved.metadata or {}).get("progress")
    problem = _bad_progress(progress)
    if problem:
        raise UsageError(f"--resume: {path} does not record its progress properly ({problem}); start afresh with "
                         "--overwrite")
    saved_run = {k: v for k, v in progress["run"].items() if k != "epochs"}
    now = {k: v for k, v in record.items() if k != "epochs"}
    if saved_run != now:
        diff = ", ".join(f"{k}: {saved_run.get(k)!r} vs {now.get(k)!r}" for k in sorted(set(saved_run) | set(now))
                         if saved_run.get(k) != now.get(k))
        raise UsageError(f"--resume: {out}/ holds a run with other settings (saved vs now: {diff})")
    try:
        ae.load_weights(path)
    except ModelFileError as err:
        raise UsageError(f"--resume: {err}") from None
    done = progress["epochs_done"]
    history = {k: v[:done] for k, v in progress["history"].items()}
    _rewrite_history_csv(os.path.join(out, "history.csv"), history)
    if done < epochs:
        print(f"resuming {record['model']} at epoch {done + 1} of {epochs} from {path}")
    return done, float(progress["seconds"]), history


def _bad_progress(progress) -> str | None:
    """What is wrong with a checkpoint's progress record, or None."""
    if not isinstance(progress, dict):
        return "no progress record"
    done, seconds = progress.get("epochs_done"), progress.get("seconds")
    if isinstance(done, bool) or not isinstance(done, int) or done < 0:
        return f"epochs_done must be a whole number >= 0, got {done!r}"
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return f"seconds must be a number >= 0, got {seconds!r}"
    if not isinstance(progress.get("run"), dict):
        return "no run settings"
    history = progress.get("history")
    if not isinstance(history, dict) or any(not isinstance(v, list) or len(v) < done or
                                            not all(isinstance(e, (int, float)) for e in v) for v in history.values()):
        return "the history does not hold a number per epoch done"
    return None


def _rewrite_history_csv(path: str, history: dict) -> None:
    """history.csv as the checkpoint has it (rows written after the checkpoint are dropped)."""
    import csv
    import io

    from .saving import atomic_write

    keys = sorted(history)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["epoch", *keys])
    for epoch in range(len(history[keys[0]]) if keys else 0):
        writer.writerow([epoch, *(history[k][epoch] for k in keys)])
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))


# -- the other commands ------------------------------------------------------------------------------
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
    from .models import load_model
    from .saving import ModelFileError

    try:
        model = load_model(args.model_file)
    except ModelFileError as err:
        raise UsageError(str(err)) from None
    meta = model.metadata or {}
    trained_on = meta.get("dataset") if meta.get("dataset") in DATASETS else None
    dataset = args.dataset or trained_on or "mnist"
    if args.dataset and trained_on and args.dataset != trained_on:
        print(f"npae: warning: {args.model_file} was trained on {trained_on}; predicting on {args.dataset} as asked",
              file=sys.stderr)
    if math.prod(model.input_shape[1:]) != 28 * 28 or math.prod(model.output_shape[1:]) != 28 * 28:
        raise UsageError(f"{args.model_file} maps {model.input_shape[1:]} to {model.output_shape[1:]}: npae predict "
                         "reconstructs 28x28 images (784 values in and out)")
    if args.no_jit:
        model.jit_compile = False
    x_test, _ = _load(dataset, args.data_dir, "test", args.limit)
    x_test = x_test.reshape((len(x_test), *model.input_shape[1:]))
    out = _prepare_out(args.out)
    noise = meta.get("noise")
    n = min(10, len(x_test))
    if isinstance(noise, (int, float)) and not isinstance(noise, bool):
        noisy = _noisy(x_test, seed=1, factor=float(noise))
        rows, labels = [x_test[:n], noisy[:n], model.predict(noisy[:n], verbose=0)], ["clean", "noisy", "denoised"]
        inputs = noisy
    else:
        rows, labels = [x_test[:n], model.predict(x_test[:n], verbose=0)], ["original", "reconstructed"]
        inputs = x_test
    try:
        path = plots.plot_reconstructions(rows, labels, os.path.join(out, "reconstructions.png"),
                                          title=f"{os.path.basename(args.model_file)} on {dataset} test images")
    except OSError as err:
        raise UsageError(str(err)) from None
    loss = model.evaluate(inputs, x_test, batch_size=256, verbose=0, return_dict=True)["loss"] if model.loss else None
    print(f"wrote {path}" + (f"; test loss {loss:.4f} ({model.loss.name}, {len(x_test)} {dataset} test images)"
                             if loss is not None else ""))
    return 0


def cmd_bench(args) -> int:
    from .bench import run_benchmark

    _prepare_out(args.out)
    try:
        run_benchmark(args.models, quick=args.quick, out_dir=args.out, tf_python=args.tf_python,
                      baseline=args.baseline, epoch=False if args.no_epoch else None)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler = {"train": cmd_train, "gradcheck": cmd_gradcheck, "summary": cmd_summary, "predict": cmd_predict,
                   "bench": cmd_bench}[args.command]
        return handler(args)
    except UsageError as err:
        first, *rest = str(err).splitlines() or [""]
        print("\n".join([f"npae: error: {first}", *(f"  {line}" for line in rest)]), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nnpae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
