"""The side-by-side benchmark: npae against PyTorch and TF-Keras (where installed), and against an
earlier npae (``--baseline DIR``), on the six autoencoders.

For each model, float32, batch 256, the same thread count for every engine, each engine in a
process of its own:
  - training throughput: samples/s of ``fit`` over an 8,192-sample array (PyTorch: optimizer steps
    on random batches gathered from it; TF-Keras: ``fit`` on a tf.data pipeline), median of
    ``repeats`` rounds of >= ``seconds`` s, the engines alternated round by round so that drift on
    a shared machine hits all of them;
  - prediction throughput, the same way (``predict`` of one batch);
  - optionally (``epoch=True``) the wall time and peak RSS of one 60,000-sample epoch of ``fit`` in
    a fresh process, less the bytes of the training array itself;
  - FLOPs per training sample (3x the forward multiply-adds, counted as im2col would) and the
    machine's float32 GEMM rate, both measured here, for reading the throughputs;
  - npae's fast-path plan and a profile of its steps (forward, backward; optimizer step).
``--baseline DIR`` runs the npae found in DIR (a checkout of another commit) as one more engine:
the before/after measurement a change to a hot path needs, alternated in one run.
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

__all__ = ["run_benchmark", "flops_per_sample", "gemm_gflops", "ratio", "layer_profile", "markdown_table",
           "epoch_in_subprocess", "find_tf_python", "best_peer"]

BATCH = 256
CONV_MODELS = ("convolutional", "denoising", "transposed", "unet")  # the models of 28x28x1 images
PEER_LABELS = {"baseline": "baseline npae", "torch": "PyTorch", "tf": "TF-Keras"}


def ratio(npae_rate: float, peer_rate: float | None) -> float | None:
    """npae / peer throughput (> 1 means npae is faster); None without a peer measurement."""
    return None if not peer_rate else npae_rate / peer_rate


def flops_per_sample(model) -> int:
    """Training FLOPs per sample: 3x the forward multiply-adds x 2 (forward, and the two backward
    GEMMs of the same size), as im2col + GEMM would do them. Dense: 2*in*out; Conv2D:
    2*Ho*Wo*kh*kw*Cin*Cout; Conv2DTranspose: 2*H*W*kh*kw*Cin*Cout (every input pixel scattered).
    A layer applied twice counts twice. (Winograd's and the upsampling-folded layers do fewer.)"""
    from .layers import Conv2D, Conv2DTranspose, Dense

    forward = 0
    for op in model.flat.ops:
        layer = op.layer
        if isinstance(layer, Dense):
            forward += 2 * layer.input_shape[0] * layer.units
        elif isinstance(layer, Conv2D):
            ho, wo, cout = layer.output_shape
            kh, kw = layer.kernel_size
            forward += 2 * ho * wo * kh * kw * layer.input_shape[2] * cout
        elif isinstance(layer, Conv2DTranspose):
            h, w, cin = layer.input_shape
            kh, kw = layer.kernel_size
            forward += 2 * h * w * kh * kw * cin * layer.filters
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


# -- the engines -------------------------------------------------------------------------------
# npae runs as a script in a process of its own, so that another checkout of npae (--baseline)
# runs the very same measurement; it uses only the public API that every npae has had.
_NPAE_WORKER = r"""
import json, os, sys, time
name, n, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import npae
here = os.path.dirname(os.path.dirname(os.path.abspath(npae.__file__)))
if os.path.realpath(here) != os.path.realpath(root):
    sys.exit(f"the benchmark worker for {root} imported the npae in {here}")
import numpy as np
from npae import autoencoders
shape = (n, 28, 28, 1) if name in ("convolutional", "denoising", "transposed", "unet") else (n, 784)
x = np.random.default_rng(0).random(shape, dtype=np.float32)
model = autoencoders.BUILDERS[name](seed=0)[0]
model.fit(x[:3 * 256], x[:3 * 256], epochs=1, batch_size=256, verbose=0)  # warm-up: kernels, caches
model.predict(x[:256], batch_size=256, verbose=0)
print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd is None:
        break
    kind, seconds = cmd
    samples, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if kind == "train":
            model.fit(x, x, epochs=1, batch_size=256, verbose=0)
            samples += n
        else:
            model.predict(x[:256], batch_size=256, verbose=0)
            samples += 256
    print(json.dumps(samples / (time.perf_counter() - start)), flush=True)
"""


def _npae_root() -> str:
    """The folder holding this npae package (what PYTHONPATH needs to import it)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# a measured npae compiles its kernels before its first timed batch, never in the background (a
# run that switched from the reference path to the fast path mid-measurement would time both)
_FOREGROUND = {"NPAE_BACKGROUND_COMPILE": "0"}


class _ScriptWorker:
    """An engine in a process of its own, speaking JSON lines over stdin/stdout: "ready", then
    ["train" | "predict", seconds] -> samples/s; null -> exit."""

    def __init__(self, argv: list[str], env: dict | None = None, cwd: str | None = None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd,
                                     env=None if env is None else {**os.environ, **env})

    def send(self, cmd) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def recv(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a benchmark worker exited (code {self.proc.wait()}): {self.proc.args[:2]}")
        return "ready" if line.strip() == "ready" else json.loads(line)

    def join(self, timeout=None) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _npae_worker(name: str, n: int, root: str) -> _ScriptWorker:
    """npae from the source tree ``root`` (this one, or a baseline checkout), run in ``root``:
    ``python -c`` puts its working directory first on sys.path, so a worker started in another
    checkout would import that one (the worker checks which npae it imported, and exits if wrong)."""
    path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return _ScriptWorker([sys.executable, "-c", _NPAE_WORKER, name, str(n), root],
                         env={"PYTHONPATH": path, **_FOREGROUND}, cwd=root)


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

    class Crop(nn.Module):  # TF's 'same' transposed convolution keeps the first 2n of 2n + 1
        def forward(self, x):
            return x[..., :-1, :-1]

    if name == "unet":  # npae's autoencoders.unet: Add and Concatenate skips
        class UNet(nn.Module):
            def __init__(self, f1=32, f2=64):
                super().__init__()
                self.c1, self.c2 = nn.Conv2d(1, f1, 3, padding=1), nn.Conv2d(f1, f2, 3, padding=1)
                self.code, self.d2 = nn.Conv2d(f2, f2, 3, padding=1), nn.Conv2d(f2, f2, 3, padding=1)
                self.up2, self.up1 = nn.ConvTranspose2d(f2, f2, 3, stride=2), nn.ConvTranspose2d(f2, f1, 3, stride=2)
                self.d1, self.out = nn.Conv2d(2 * f1, f1, 3, padding=1), nn.Conv2d(f1, 1, 3, padding=1)
                self.crop, self.pool, self.relu = Crop(), nn.MaxPool2d(2), nn.ReLU()

            def forward(self, x):
                r = self.relu
                c1 = r(self.c1(x))
                c2 = r(self.c2(self.pool(c1)))
                up2 = r(self.crop(self.up2(r(self.code(self.pool(c2))))))
                up1 = r(self.crop(self.up1(r(self.d2(up2 + c2)))))
                return self.out(r(self.d1(torch.cat([up1, c1], dim=1))))

        body = [UNet()]
    elif name == "transposed":  # npae's autoencoders.transposed; 'same' at stride 2 pads as TF does
        class Noise(nn.Module):
            def forward(self, x):
                return x + 0.2 * torch.randn_like(x) if self.training else x

        def bn(c):  # Keras's defaults: momentum 0.99 (PyTorch counts it the other way), epsilon 1e-3
            return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

        body = [Noise(), nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(1, 32, 3, stride=2, bias=False), bn(32), nn.ReLU(),
                nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(32, 64, 3, stride=2, bias=False), bn(64), nn.ReLU(),
                nn.ConvTranspose2d(64, 64, 3, stride=2, bias=False), Crop(), bn(64), nn.ReLU(),
                nn.ConvTranspose2d(64, 32, 3, stride=2, bias=False), Crop(), bn(32), nn.ReLU(),
                nn.Conv2d(32, 1, 3, padding=1)]
    elif name in ("vanilla", "sparse"):
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
    if cfg["optimizer"] == "adam":  # (Keras's epsilon)
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
        model.eval()  # inference mode: batch normalisation's moving statistics, no noise
        with torch.no_grad():
            torch.sigmoid(model(xt[:BATCH]))
        model.train()

    return model, train, predict


def _torch_worker(conn, name: str, n: int, threads: int) -> None:
    """PyTorch in a process of its own, so that the thread pools never spin against each other.
    Commands: ("train" | "predict", seconds) -> samples/s; None -> exit."""
    import torch

    torch.set_num_threads(threads)
    x = np.random.default_rng(0).random((n, 28, 28, 1) if name in CONV_MODELS else (n, 784), dtype=np.float32)
    _, train, predict = _torch_engine(name, x)
    rng = np.random.default_rng(1)
    for _ in range(3):  # warm-up: caches, allocator
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


class _PipeWorker:
    """A multiprocessing worker behind the _ScriptWorker interface."""

    def __init__(self, target, *args):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()

    def send(self, cmd) -> None:
        self.conn.send(cmd)

    def recv(self):
        return self.conn.recv()

    def join(self, timeout=None) -> None:
        self.proc.join(timeout=timeout)


def _start(engine: str, name: str, n: int, threads: int, tf_python: str | None, baseline: str | None):
    if engine == "npae":
        return _npae_worker(name, n, _npae_root())
    if engine == "baseline":
        return _npae_worker(name, n, baseline)
    if engine == "torch":
        return _PipeWorker(_torch_worker, name, n, threads)
    return _ScriptWorker([tf_python, *_keras_command("serve", name, n, threads)])


def _rounds(name: str, engines: list[str], repeats: int, seconds: float, n: int, threads: int,
            tf_python: str | None = None, baseline: str | None = None) -> dict:
    """Median samples/s per engine and kind; each round runs every engine in turn."""
    workers = {engine: _start(engine, name, n, threads, tf_python, baseline) for engine in engines}
    try:
        for worker in workers.values():
            worker.recv()
        out = {}
        for kind in ("train", "predict"):
            rates: dict[str, list[float]] = {e: [] for e in engines}
            for _ in range(repeats):
                for engine, worker in workers.items():
                    worker.send((kind, seconds))
                    rates[engine].append(worker.recv())
            out[kind] = {e: statistics.median(v) for e, v in rates.items()}
        return out
    finally:
        for worker in workers.values():
            try:
                worker.send(None)
            except (OSError, ValueError):
                pass
            worker.join(timeout=10)


def layer_profile(model, x, steps: int = 10) -> list[dict]:
    """Mean forward and backward time per step of the model's fast-path plan (ms), over ``steps``
    training steps, plus the optimizer step, after one untimed step (which loads the compiled
    kernels). A step may run several layers (a convolution with the pooling after it): its
    description says which."""
    from .fast.path import running_kernels

    model.compile(optimizer=model.optimizer, loss=model.loss, jit_compile=True)
    path, grads, params = model.path, model.gradients(), model.parameters()
    plan, ws = path.plan("train"), path.workspace("train")
    x = [np.ascontiguousarray(x, dtype=model.dtype)]
    path.gradients(x, x, grads)
    times: dict = {step: [0.0, 0.0] for step in plan.steps}

    def timer(step, phase, seconds):
        times[step][phase == "backward"] += seconds

    opt_t = 0.0
    for _ in range(steps):
        with running_kernels():
            plan.gradients(x, x, ws, grads, timer)
        t = time.perf_counter()
        path.step(model.optimizer, params, grads)
        opt_t += time.perf_counter() - t
    rows = [{"layer": step.describe(), "output": list(step.output_shape()), "forward_ms": 1e3 * f / steps,
             "backward_ms": 1e3 * b / steps} for step, (f, b) in times.items()]
    rows.append({"layer": "optimizer step", "output": [], "forward_ms": 0.0, "backward_ms": 1e3 * opt_t / steps})
    return rows


_EPOCH_SCRIPT = r"""
import json, sys, time
import npae
import numpy as np
from npae.bench_keras import peak_rss_bytes
name, engine, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
shape = (n, 28, 28, 1) if name in ("convolutional", "denoising", "transposed", "unet") else (n, 784)
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
                        threads: int | None = None, root: str | None = None) -> dict:
    """Wall time and peak RSS of one n-sample epoch of training in a fresh process; ``engine``
    "npae" (from the source tree ``root``, default this one), "torch" or "tf"."""
    if engine == "tf":
        cmd, env = [tf_python, *_keras_command("epoch", name, n, threads or os.cpu_count() or 1)], None
    else:
        cmd = [sys.executable, "-c", _EPOCH_SCRIPT, name, engine, str(n)]
        path = os.pathsep.join([root or _npae_root(), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env = {**os.environ, "PYTHONPATH": path, **_FOREGROUND}
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env,
                         cwd=None if engine == "tf" else root or _npae_root())  # (see _npae_worker)
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


def _baseline_has(baseline: str, name: str) -> bool:
    """Whether the npae in the folder ``baseline`` builds the model ``name`` (an older npae may not)."""
    code = f"from npae import autoencoders; print({name!r} in autoencoders.BUILDERS)"
    env = {**os.environ, "PYTHONPATH": baseline}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=baseline)
    return res.returncode == 0 and res.stdout.strip() == "True"


def best_peer(rates: dict) -> tuple[str | None, float | None]:
    """The fastest engine other than npae (and an npae baseline), and its rate."""
    peers = {k: v for k, v in rates.items() if k not in ("npae", "baseline") and v}
    if not peers:
        return None, None
    name = max(peers, key=peers.get)
    return name, peers[name]


def run_benchmark(models, quick: bool = False, out_dir: str = os.path.join("runs", "bench"), repeats: int = 5,
                  seconds: float = 2.0, epoch: bool | None = None, peers: bool = True, print_fn=print,
                  tf_python: str | None = None, baseline: str | None = None) -> dict:
    """Run the benchmark and write results.json / results.md into ``out_dir``; returns the results.
    Peers: PyTorch when it imports here; TF-Keras when it imports under ``tf_python`` (default:
    $NPAE_BENCH_TF_PYTHON, else this interpreter); ``baseline``, a folder holding another npae
    (e.g. ``git worktree add ../before HEAD~1``), as one more engine."""
    from . import autoencoders

    if baseline is not None and not os.path.isfile(os.path.join(baseline, "npae", "__init__.py")):
        raise ValueError(f"--baseline: {baseline!r} holds no npae package (expected {baseline}/npae/__init__.py)")
    if baseline is not None:
        baseline = os.path.abspath(baseline)  # (its workers run in it: a relative path would move)
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
           "baseline": os.path.abspath(baseline) if baseline else None,
           "gemm_gflops": gemm_gflops(seconds=0.3 if quick else 2.0)}
    print_fn(f"threads: {threads} for every engine; float32 GEMM {env['gemm_gflops']:.0f} GFLOP/s")
    results = {"env": env, "models": {}}
    n = 512 if quick else 8192
    engines = ["npae"] + (["baseline"] if baseline else []) + (["torch"] if have_torch else []) + \
        (["tf"] if tf_versions else [])
    for name in models:
        x = np.random.default_rng(0).random((n, 28, 28, 1) if name in CONV_MODELS else (n, 784), dtype=np.float32)
        here = list(engines)
        if baseline and not _baseline_has(baseline, name):
            print_fn(f"{name}: the baseline npae has no such model; it is measured without the baseline")
            here.remove("baseline")
        measured = _rounds(name, here, repeats, seconds, n, threads, tf_python, baseline)
        train, pred = measured["train"], measured["predict"]
        model = autoencoders.BUILDERS[name](seed=0)[0]
        row = {"train": train, "predict": pred, "flops_per_sample": flops_per_sample(model),
               "train_ratio_vs_best_peer": ratio(train["npae"], best_peer(train)[1]),
               "predict_ratio_vs_best_peer": ratio(pred["npae"], best_peer(pred)[1]),
               "plan": model.path.plan("train").describe() if model.jit_compile else None,
               "profile": layer_profile(model, x[:BATCH], steps=3 if quick else 10)}
        for e in here[1:]:
            row[f"train_ratio_vs_{e}"] = ratio(train["npae"], train.get(e))
            row[f"predict_ratio_vs_{e}"] = ratio(pred["npae"], pred.get(e))
        if epoch:
            row["epoch"] = {"npae": epoch_in_subprocess(name, "npae")}
            if "baseline" in here:
                row["epoch"]["baseline"] = epoch_in_subprocess(name, "npae", root=baseline)
            if have_torch:
                row["epoch"]["torch"] = epoch_in_subprocess(name, "torch")
            if tf_versions:
                row["epoch"]["tf"] = epoch_in_subprocess(name, "tf", tf_python=tf_python, threads=threads)
        results["models"][name] = row
        others = "".join(f"  {e} {train[e]:9.0f}/s" for e in here[1:])
        if row.get("train_ratio_vs_baseline"):
            others += f"  x{row['train_ratio_vs_baseline']:.2f} vs baseline"
        if row["train_ratio_vs_best_peer"]:
            others += f"  x{row['train_ratio_vs_best_peer']:.2f} vs the faster peer"
        print_fn(f"{name:14s} train {train['npae']:9.0f}/s{others}  predict {pred['npae']:9.0f}/s")
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
    """The results as a markdown table (ratios: npae / the faster of PyTorch and TF-Keras, and
    npae / the baseline npae where there is one)."""
    env = results["env"]
    engines = [e for e in ("baseline", "torch", "tf") if any(e in r["train"] for r in results["models"].values())]
    versions = "".join(f", {PEER_LABELS[e]} {env.get('torch' if e == 'torch' else 'tensorflow')}"
                       for e in engines if e != "baseline")
    lines = [f"Machine: {env['processor']}, {env['threads']} threads for every engine; Python {env['python']}, "
             f"NumPy {env['numpy']}, Numba {env['numba']}{versions}; float32 GEMM "
             f"{env['gemm_gflops']:.0f} GFLOP/s; Numba threading layer {env.get('numba_threading_layer')}."
             + (f" Baseline: the npae in {env['baseline']}." if env.get("baseline") else ""), ""]
    peers = [e for e in engines if e != "baseline"]
    all_engines = ["npae", *engines]

    def cols(kind):
        head = f" npae {kind}/s |" + "".join(f" {PEER_LABELS[e]} {kind}/s |" for e in engines)
        return head + (" vs baseline |" if "baseline" in engines else "") + (" vs faster peer |" if peers else "")

    lines.append(f"| model |{cols('train')}{cols('predict')} epoch wall {' / '.join(all_engines)} (s) "
                 f"| peak RSS less data {' / '.join(all_engines)} (MB) |")
    lines.append("|" + " --- |" * (lines[-1].count("|") - 1))

    def fmt(v, d=0):
        return "-" if v is None else f"{v:,.{d}f}"

    for name, r in results["models"].items():
        ep = r.get("epoch", {})
        wall = " / ".join(fmt(ep[k]["wall_s"], 1) for k in all_engines if k in ep) or "-"
        rss = " / ".join(fmt(ep[k]["rss_less_data_mb"]) for k in all_engines if k in ep) or "-"
        cells = []
        for kind in ("train", "predict"):
            rates = r[kind]
            cells += [fmt(rates["npae"])] + [fmt(rates.get(e)) for e in engines]
            if "baseline" in engines:
                cells.append(fmt(r.get(f"{kind}_ratio_vs_baseline"), 2))
            if peers:
                cells.append(fmt(r.get(f"{kind}_ratio_vs_best_peer"), 2))
        lines.append(f"| {name} | {' | '.join(cells)} | {wall} | {rss} |")
    return "\n".join(lines) + "\n"
