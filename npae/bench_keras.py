"""The TensorFlow-Keras peer of the benchmark, as a standalone script (it imports neither npae nor
Numba, so it runs under any interpreter that has ``tensorflow`` and ``keras``, e.g. a venv of its own):

    python bench_keras.py versions                      -> {"tensorflow": ..., "keras": ...}
    python bench_keras.py serve MODEL N THREADS         -> "ready", then answers JSON lines on stdin:
        ["train", seconds] -> samples/s of fit; ["predict", seconds] -> samples/s; null -> exit
    python bench_keras.py epoch MODEL N THREADS         -> {"wall_s", "peak_rss_mb", "data_mb"} of one
                                                           fit epoch over N samples

The six models are the tutorial's Keras programs with npae's defaults (npae/autoencoders.py):
Adam(1e-3) + MSE for vanilla/multilayer/sparse (64-d code), Adadelta(1.0) + binary cross-entropy
for deep/convolutional/denoising. Training runs the way a Keras user trains at full speed: ``fit``
on a shuffled, batched, repeated ``tf.data`` pipeline, many steps per call.
"""

import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN kernels on by default only on some Intel CPUs; on this project's AMD
# machine they doubled Keras's convolutional training (1.5k -> 3.0k samples/s). The peer gets its
# best configuration.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
BATCH = 256
CONV = ("convolutional", "denoising")
IMAGES = CONV + ("transposed", "unet")


def peak_rss_bytes() -> int:
    """This process's peak resident set size. Linux: VmHWM of /proc/self/status, the high-water mark
    of this program's own memory; ru_maxrss would also count the parent's RSS at fork time, since
    Linux carries it across exec (a 676 MB benchmark parent showed up in every child)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def build(name):
    import keras
    from keras import layers

    if name == "unet":  # npae's autoencoders.unet
        inp = keras.Input((28, 28, 1))
        c1 = layers.Conv2D(32, 3, activation="relu", padding="same")(inp)
        c2 = layers.Conv2D(64, 3, activation="relu", padding="same")(layers.MaxPooling2D(2)(c1))
        code = layers.Conv2D(64, 3, activation="relu", padding="same")(layers.MaxPooling2D(2)(c2))
        up2 = layers.Conv2DTranspose(64, 3, strides=2, activation="relu", padding="same")(code)
        d2 = layers.Conv2D(64, 3, activation="relu", padding="same")(layers.Add()([up2, c2]))
        up1 = layers.Conv2DTranspose(32, 3, strides=2, activation="relu", padding="same")(d2)
        d1 = layers.Conv2D(32, 3, activation="relu", padding="same")(layers.Concatenate()([up1, c1]))
        out = layers.Conv2D(1, 3, activation="sigmoid", padding="same")(d1)
    elif name == "transposed":  # npae's autoencoders.transposed
        x = inp = keras.Input((28, 28, 1))
        x = layers.GaussianNoise(0.2)(x)
        for f in (32, 64):
            x = layers.Conv2D(f, 3, strides=2, padding="same", use_bias=False)(x)
            x = layers.ReLU()(layers.BatchNormalization()(x))
        for f in (64, 32):
            x = layers.Conv2DTranspose(f, 3, strides=2, padding="same", use_bias=False)(x)
            x = layers.ReLU()(layers.BatchNormalization()(x))
        out = layers.Conv2D(1, 3, activation="sigmoid", padding="same")(x)
    elif name in CONV:
        x = inp = keras.Input((28, 28, 1))
        enc, dec = ((16, 8, 8), (8, 8, 16)) if name == "convolutional" else ((32, 32), (32, 32))
        for f in enc:
            x = layers.Conv2D(f, 3, activation="relu", padding="same")(x)
            x = layers.MaxPooling2D(2, padding="same")(x)
        for i, f in enumerate(dec):
            valid = name == "convolutional" and i == len(dec) - 1
            x = layers.Conv2D(f, 3, activation="relu", padding="valid" if valid else "same")(x)
            x = layers.UpSampling2D(2)(x)
        out = layers.Conv2D(1, 3, activation="sigmoid", padding="same")(x)
    else:
        units = {"vanilla": [64], "sparse": [64], "multilayer": [128, 64, 128],
                 "deep": [128, 64, 32, 64, 128]}[name]
        x = inp = keras.Input((784,))
        for u in units:
            reg = keras.regularizers.l1(1e-4) if name == "sparse" else None
            x = layers.Dense(u, activation="relu", activity_regularizer=reg)(x)
        out = layers.Dense(784, activation="sigmoid")(x)
    model = keras.Model(inp, out)
    if name in ("transposed", "unet"):
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7), loss="binary_crossentropy")
    elif name in ("deep",) + CONV:
        model.compile(optimizer=keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-7),
                      loss="binary_crossentropy")
    else:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7), loss="mse")
    return model


def setup(name, n, threads):
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    x = np.random.default_rng(0).random((n, 28, 28, 1) if name in IMAGES else (n, 784), dtype=np.float32)
    return tf, x, build(name)


def serve(name, n, threads):
    tf, x, model = setup(name, n, threads)
    data = tf.data.Dataset.from_tensor_slices((x, x)).shuffle(len(x), seed=0).batch(BATCH).repeat()
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)  # warm-up: tracing, allocator
    model.predict_on_batch(x[:BATCH])
    steps = 3
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd is None:
            return
        kind, seconds = cmd
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            if kind == "train":  # one fit call for (about) the rest of the round
                model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
                done += steps
                rate = done / (time.perf_counter() - start)
                steps = max(3, int(rate * (seconds - (time.perf_counter() - start))) + 1)
            else:
                model.predict_on_batch(x[:BATCH])
                done += 1
        print(json.dumps(done * BATCH / (time.perf_counter() - start)), flush=True)


def epoch(name, n, threads):
    _, x, model = setup(name, n, threads)
    start = time.perf_counter()
    model.fit(x, x, batch_size=BATCH, epochs=1, shuffle=True, verbose=0)
    wall = time.perf_counter() - start
    print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_rss_bytes() / 2**20, "data_mb": x.nbytes / 2**20}))


if __name__ == "__main__":
    if sys.argv[1] == "versions":
        import keras
        import tensorflow

        print(json.dumps({"tensorflow": tensorflow.__version__, "keras": keras.__version__}))
    else:
        {"serve": serve, "epoch": epoch}[sys.argv[1]](sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
