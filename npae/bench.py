"""The side-by-side benchmark: npae against PyTorch (if installed) on the six autoencoders.

For each model, float32, batch 256, the same thread count for every engine:
  - training throughput: samples/s over optimizer steps after warm-up (each step gathers a random
    batch from a 8,192-sample array, as fit does), median of ``repeats`` rounds of >= ``seconds`` s,
    npae and the peer alternated round by round so drift on a shared machine hits both;
  - prediction throughput, the same way;
  - optionally (``epoch=True``) the wall time and peak RSS of one 60,000-sample epoch of ``fit`` in
    a fresh subprocess, less the bytes of the training array itself;
  - FLOPs per training sample (3x the forward FLOPs) and the machine's float32 GEMM rate measured
    in the same run, giving each model's % of that roofline;
  - a per-layer profile of npae (forward, backward per layer; optimizer step).
Results go to ``out_dir/results.json`` and ``out_dir/results.md``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

__all__ = ["run_benchmark", "flops_per_sample", "gemm_gflops", "ratio"]

BATCH = 256


def ratio(npae_rate: float, peer_rate: float | None) -> float | None:
    """npae / peer throughput (> 1 means npae is faster); None without a peer measurement."""
    return None if not peer_rate else npae_rate / peer_rate


def flops_per_sample(model) -> int:
    """Training FLOPs per sample: 3x the forward multiply-adds x 2 (forward, and the two backward
    GEMMs of the same size). Dense: 2*in*out; Conv2D: 2*Ho*Wo*kh*kw*Cin*Cout."""
    from .layers import Conv2D, Dense

    forward = 0
    for layer in model.layers:
        if isinstance(layer, Dense):
            forward += 2 * layer.input_shape[0] * layer.units
        elif isinstance(layer, Conv2D):
            ho, wo, cout = layer.output_shape
            kh, kw = layer.kernel_size
            forward += 2 * ho * wo * kh * kw * layer.input_shape[2] * cout
    return 3 * forward


def gemm_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    """The machine's float32 GEMM rate (NumPy's BLAS), median of timed n x n x n products."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


# -- the engines: each returns (train_step(idx), predict_step()) closures ----------------------
def _npae_engine(name, x):
    from . import autoencoders

    model = autoencoders.BUILDERS[name](seed=0)[0]
    buf = np.empty((BATCH, *x.shape[1:]), np.float32)
    params, grads = model.parameters(), model.gradients()

    def train(idx):
        xb = np.take(x, idx, axis=0, out=buf)
        model.compute_gradients(xb, xb)
        model.optimizer.step(params, grads)

    def predict():  # what users call: batches through kept buffers, copied into the result
        model.predict(x[:BATCH], batch_size=BATCH)

    return model, train, predict


def _torch_model(name):
    import torch
    from torch import nn

    from .autoencoders import DEFAULTS

    def dense(units):
        layers, prev = [], 784
        for i, u in enumerate(units):
            layers += [nn.Linear(prev, u), nn.ReLU() if i < len(units) - 1 else nn.Identity()]
            prev = u
        return layers

    if name in ("vanilla", "sparse"):
        body = dense([64, 784])
    elif name == "multilayer":
        body = dense([128, 64, 128, 784])
    elif name == "deep":
        body = dense([128, 64, 32, 64, 128, 784])
    else:
        enc = (16, 8, 8) if name == "convolutional" else (32, 32)
        dec = (8, 8, 16) if name == "convolutional" else (32, 32)
        body, prev = [], 1
        for f in enc:  # TF 'same' pooling of 7 -> 4 pads bottom/right: ceil_mode does the same
            body += [nn.Conv2d(prev, f, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            prev = f
        for i, f in enumerate(dec):
            valid = name == "convolutional" and i == len(dec) - 1
            body += [nn.Conv2d(prev, f, 3, padding=0 if valid else 1), nn.ReLU(), nn.Upsample(scale_factor=2)]
            prev = f
        body += [nn.Conv2d(prev, 1, 3, padding=1)]
    model = nn.Sequential(*body)  # outputs logits; the loss below applies the sigmoid
    cfg = DEFAULTS[name]
    loss = nn.BCEWithLogitsLoss() if cfg["loss"] == "binary_crossentropy" else None
    if cfg["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    else:
        opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    return model, loss, opt


def _torch_engine(name, x):
    import torch

    model, bce, opt = _torch_model(name)
    conv = x.ndim == 4
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if conv else x)
    l1 = name == "sparse"

    def train(idx):
        xb = xt[torch.from_numpy(idx)]
        opt.zero_grad(set_to_none=True)
        if l1:  # vanilla with the L1 activity penalty on the code
            h = model[1](model[0](xb))
            out = torch.sigmoid(model[3](model[2](h)))
            loss = torch.mean((out - xb) ** 2) + 1e-4 * h.abs().sum() / len(xb)
        else:
            z = model(xb)
            loss = bce(z, xb) if bce is not None else torch.mean((torch.sigmoid(z) - xb) ** 2)
        loss.backward()
        opt.step()

    def predict():
        with torch.no_grad():
            torch.sigmoid(model(xt[:BATCH]))

    return model, train, predict


def _worker(conn, engine: str, name: str, n: int, threads: int) -> None:
    """A process of its own per engine, so their thread pools never spin against each other.
    Commands: ("train" | "predict", seconds) -> samples/s; None -> exit."""
    x = np.random.default_rng(0).random((n, 28, 28, 1) if name in ("convolutional", "denoising") else (n, 784),
                                        dtype=np.float32)
    if engine == "torch":
        import torch

        torch.set_num_threads(threads)
    _, train, predict = (_npae_engine if engine == "npae" else _torch_engine)(name, x)
    rng = np.random.default_rng(1)
    for _ in range(3):  # warm-up: JIT, caches, allocator
        train(rng.integers(0, n, BATCH))
        predict()
    conn.send("ready")
    while (cmd := conn.recv()) is not None:
        kind, seconds = cmd
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            train(rng.integers(0, n, BATCH)) if kind == "train" else predict()
            steps += 1
        conn.send(steps * BATCH / (time.perf_counter() - start))


KERAS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_keras.py")


def _keras_command(*args) -> list[str]:
    """Arguments that run bench_keras.py: its source through ``-c``, since running the file by
    path would put npae/ first on sys.path, where npae's random.py shadows the standard one."""
    with open(KERAS_SCRIPT) as f:
        return ["-c", f.read(), *map(str, args)]


class _KerasWorker:
    """The TF-Keras engine in a process of its own, under its own interpreter (``tf_python``),
    speaking JSON lines over stdin/stdout; the same send/recv/join interface as a Pipe worker."""

    def __init__(self, tf_python: str, name: str, n: int, threads: int):
        self.proc = subprocess.Popen([tf_python, *_keras_command("serve", name, n, threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(self, cmd) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def recv(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the TF-Keras worker exited (code {self.proc.wait()})")
        return "ready" if line.strip() == "ready" else json.loads(line)

    def join(self, timeout=None) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _rounds(name: str, engines: list[str], repeats: int, seconds: float, n: int, threads: int,
            tf_python: str | None = None) -> dict:
    """Median samples/s per engine and kind; each round runs every engine in turn."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    workers = {}
    for engine in engines:
        if engine == "tf":
            keras = _KerasWorker(tf_python, name, n, threads)
            workers[engine] = (keras, keras)
            continue
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, engine, name, n, threads), daemon=True)
        proc.start()
        workers[engine] = (proc, parent)
    try:
        for _, conn in workers.values():
            conn.recv()
        out = {}
        for kind in ("train", "predict"):
            rates: dict[str, list[float]] = {e: [] for e in engines}
            for _ in range(repeats):
                for engine, (_, conn) in workers.items():
                    conn.send((kind, seconds))
                    rates[engine].append(conn.recv())
            out[kind] = {e: statistics.median(v) for e, v in rates.items()}
        return out
    finally:
        for proc, conn in workers.values():
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
            proc.join(timeout=10)


def layer_profile(model, x, steps: int = 10) -> list[dict]:
    """Mean forward and backward time per layer (ms) over ``steps`` training steps, plus the
    optimizer step as its own row, after one untimed step (which loads the compiled kernels). An
    UpSampling2D that the next Conv2D reads on the fly, or a MaxPooling2D that the Conv2D before it
    runs in its kernel (``Model._forward_steps``), shows 0: its work is in that Conv2D's row."""
    model.compute_gradients(x, x)
    layers = model._layers
    fwd, bwd, opt_t = np.zeros(len(layers)), np.zeros(len(layers)), 0.0
    params, grads = model.parameters(), model.gradients()
    row = {id(layer): i for i, layer in enumerate(layers)}
    with model._reusing_buffers():  # the steps exactly as compute_gradients runs them
        for _ in range(steps):
            out = x
            for step in model._forward_steps(True, model._fused):
                t = time.perf_counter()
                out = model._layer_forward(out, True, *step)
                fwd[row[id(step[0])]] += time.perf_counter() - t
            (model._logit_loss if model._fused else model.loss).forward(out, x)
            grad = (model._logit_loss if model._fused else model.loss).backward()
            for layer, *how in model._backward_steps():
                t = time.perf_counter()
                grad = model._layer_backward(layer, grad, *how)
                bwd[row[id(layer)]] += time.perf_counter() - t
            t = time.perf_counter()
            model.optimizer.step(params, grads)
            opt_t += time.perf_counter() - t
    rows = [{"layer": f"{layer.name} ({type(layer).__name__})", "output": list(layer.output_shape),
             "forward_ms": 1e3 * f / steps, "backward_ms": 1e3 * b / steps}
            for layer, f, b in zip(layers, fwd, bwd)]
    rows.append({"layer": "optimizer step", "output": [], "forward_ms": 0.0, "backward_ms": 1e3 * opt_t / steps})
    return rows


_EPOCH_SCRIPT = r"""
import json, sys, time
import npae  # before NumPy, as the npae command does (see npae/_threads.py)
import numpy as np
from npae.bench_keras import peak_rss_bytes
name, engine, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
shape = (n, 28, 28, 1) if name in ("convolutional", "denoising") else (n, 784)
x = np.random.default_rng(0).random(shape, dtype=np.float32)
t = time.perf_counter()
if engine == "npae":
    from npae import autoencoders
    m = autoencoders.BUILDERS[name](seed=0)[0]
    t = time.perf_counter()
    m.fit(x, x, epochs=1, batch_size=256, verbose=0, seed=0)
else:
    import torch
    from npae.bench import _torch_engine
    _, train, _ = _torch_engine(name, x)
    t = time.perf_counter()
    order = np.random.default_rng(0).permutation(n)
    for s in range(0, n, 256):
        train(order[s:s + 256])
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_rss_bytes() / 2**20, "data_mb": x.nbytes / 2**20}))
"""


def epoch_in_subprocess(name: str, engine: str, n: int = 60000, tf_python: str | None = None,
                        threads: int | None = None) -> dict:
    """Wall time and peak RSS of one n-sample epoch of training in a fresh process."""
    if engine == "tf":
        cmd = [tf_python, *_keras_command("epoch", name, n, threads or os.cpu_count() or 1)]
    else:
        cmd = [sys.executable, "-c", _EPOCH_SCRIPT, name, engine, str(n)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["rss_less_data_mb"] = out["peak_rss_mb"] - out["data_mb"]
    return out


def find_tf_python(tf_python: str | None = None) -> tuple[str | None, dict | None, str]:
    """The interpreter for the TF-Keras peer and its versions: ``tf_python`` if given, else
    $NPAE_BENCH_TF_PYTHON, else this interpreter. Returns (path, versions, why not) with path None
    when TensorFlow and Keras do not import there."""
    path = tf_python or os.environ.get("NPAE_BENCH_TF_PYTHON") or sys.executable
    try:
        res = subprocess.run([path, *_keras_command("versions")], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, None, f"cannot run {path}: {err}"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        return None, None, f"tensorflow/keras do not import under {path} ({last})"
    return path, json.loads(res.stdout.strip().splitlines()[-1]), ""


def best_peer(rates: dict) -> tuple[str | None, float | None]:
    """The fastest engine other than npae, and its rate."""
    peers = {k: v for k, v in rates.items() if k != "npae" and v}
    if not peers:
        return None, None
    name = max(peers, key=peers.get)
    return name, peers[name]


def run_benchmark(models, quick: bool = False, out_dir: str = "benchmarks/results", repeats: int = 5,
                  seconds: float = 2.0, epoch: bool | None = None, peers: bool = True, print_fn=print,
                  tf_python: str | None = None) -> dict:
    """Run the benchmark and write results.json / results.md into ``out_dir``; returns the results.
    Peers: PyTorch when it imports here; TF-Keras when it imports under ``tf_python`` (default:
    $NPAE_BENCH_TF_PYTHON, else this interpreter)."""
    from . import autoencoders

    if quick:
        repeats, seconds = 1, 0.2
    epoch = (not quick) if epoch is None else epoch
    threads = os.cpu_count() or 1
    have_torch = False
    if peers:
        try:
            import torch  # noqa: F401  (it runs in worker processes; here only its version is read)

            have_torch = True
        except ImportError:
            print_fn("PyTorch is not installed here: no PyTorch peer (pip install torch==2.13.0)")
    tf_versions = None
    if peers:
        tf_python, tf_versions, why = find_tf_python(tf_python)
        if tf_python is None:
            print_fn(f"no TF-Keras peer: {why} (pip install tensorflow-cpu keras, then --tf-python PATH)")
    import numba

    env = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
           "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
           "threads": threads, "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
           "torch": __import__("torch").__version__ if have_torch else None,
           "tensorflow": (tf_versions or {}).get("tensorflow"), "keras": (tf_versions or {}).get("keras"),
           "gemm_gflops": gemm_gflops(seconds=0.3 if quick else 2.0)}
    print_fn(f"threads: {threads} for every engine; float32 GEMM {env['gemm_gflops']:.0f} GFLOP/s")
    results = {"env": env, "models": {}}
    n = 512 if quick else 8192
    for name in models:
        conv = name in ("convolutional", "denoising")
        x = np.random.default_rng(0).random((n, 28, 28, 1) if conv else (n, 784), dtype=np.float32)
        engines = ["npae"] + (["torch"] if have_torch else []) + (["tf"] if tf_versions else [])
        measured = _rounds(name, engines, repeats, seconds, n, threads, tf_python)
        train, pred = measured["train"], measured["predict"]
        model = autoencoders.BUILDERS[name](seed=0)[0]
        flops = flops_per_sample(model)
        row = {"train": train, "predict": pred, "flops_per_sample": flops,
               "roofline_samples_per_s": env["gemm_gflops"] * 1e9 / flops,
               "npae_pct_of_roofline": 100 * train["npae"] * flops / (env["gemm_gflops"] * 1e9),
               "train_ratio_vs_torch": ratio(train["npae"], train.get("torch")),
               "predict_ratio_vs_torch": ratio(pred["npae"], pred.get("torch")),
               "train_ratio_vs_tf": ratio(train["npae"], train.get("tf")),
               "predict_ratio_vs_tf": ratio(pred["npae"], pred.get("tf")),
               "train_ratio_vs_best_peer": ratio(train["npae"], best_peer(train)[1]),
               "predict_ratio_vs_best_peer": ratio(pred["npae"], best_peer(pred)[1]),
               "profile": layer_profile(autoencoders.BUILDERS[name](seed=0)[0], x[:BATCH], steps=3 if quick else 10)}
        if epoch:
            row["epoch"] = {"npae": epoch_in_subprocess(name, "npae")}
            if have_torch:
                row["epoch"]["torch"] = epoch_in_subprocess(name, "torch")
            if tf_versions:
                row["epoch"]["tf"] = epoch_in_subprocess(name, "tf", tf_python=tf_python, threads=threads)
        results["models"][name] = row
        peer = "".join(f"  {e} {train[e]:9.0f}/s" for e in engines[1:])
        if row["train_ratio_vs_best_peer"]:
            peer += f"  x{row['train_ratio_vs_best_peer']:.2f} vs the faster peer"
        print_fn(f"{name:14s} train {train['npae']:9.0f}/s{peer}  predict {pred['npae']:9.0f}/s  "
                 f"roofline {row['npae_pct_of_roofline']:.0f}%")
    try:  # known once a parallel kernel has run (the profiles above ran them in this process)
        env["numba_threading_layer"] = numba.threading_layer()
    except ValueError:
        env["numba_threading_layer"] = None
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown_table(results))
    return results


def markdown_table(results: dict) -> str:
    """The README's performance table from a results dict (ratios: npae / the faster peer)."""
    env = results["env"]
    peers = [(k, label) for k, label in (("torch", "PyTorch"), ("tf", "TF-Keras")) if env.get(
        "torch" if k == "torch" else "tensorflow")]
    versions = "".join(f", {label} {env['torch'] if k == 'torch' else env['tensorflow']}" for k, label in peers)
    lines = [f"Machine: {env['processor']}, {env['threads']} threads for every engine; Python {env['python']}, "
             f"NumPy {env['numpy']}, Numba {env['numba']}{versions}; float32 GEMM "
             f"{env['gemm_gflops']:.0f} GFLOP/s; Numba threading layer {env.get('numba_threading_layer')}, "
             f"OPENBLAS_THREAD_TIMEOUT={env.get('openblas_thread_timeout')}.", ""]
    names = "".join(f" {label} train/s |" for _, label in peers)
    pnames = "".join(f" {label} predict/s |" for _, label in peers)
    engines = ["npae", *(k for k, _ in peers)]
    lines.append(f"| model | npae train/s |{names} ratio | npae predict/s |{pnames} ratio | % of roofline "
                 f"| epoch wall {' / '.join(engines)} (s) | peak RSS less data {' / '.join(engines)} (MB) |")
    lines.append("|" + " --- |" * (8 + 2 * len(peers)))

    def fmt(v, d=0):
        return "-" if v is None else f"{v:,.{d}f}"

    for name, r in results["models"].items():
        t, p = r["train"], r["predict"]
        ep = r.get("epoch", {})
        wall = " / ".join(fmt(ep[k]["wall_s"], 1) for k in engines if k in ep) or "-"
        rss = " / ".join(fmt(ep[k]["rss_less_data_mb"]) for k in engines if k in ep) or "-"
        tp = "".join(f" {fmt(t.get(k))} |" for k, _ in peers)
        pp = "".join(f" {fmt(p.get(k))} |" for k, _ in peers)
        lines.append(f"| {name} | {fmt(t['npae'])} |{tp} {fmt(r.get('train_ratio_vs_best_peer'), 2)} "
                     f"| {fmt(p['npae'])} |{pp} {fmt(r.get('predict_ratio_vs_best_peer'), 2)} "
                     f"| {r['npae_pct_of_roofline']:.0f}% | {wall} | {rss} |")
    return "\n".join(lines) + "\n"
