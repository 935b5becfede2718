"""npae against Keras 3 on the same weights and data: predictions, losses, metrics, and two
training steps per optimizer (the second uses the optimizer's slots), for models that use every
layer npae added for Keras programs (Conv2DTranspose, BatchNormalization, Dropout, GaussianNoise,
LeakyReLU, ReLU, the activations tanh / elu / softplus / silu / leaky_relu / linear) and the
losses and metrics npae has; then graph models built in npae and converted with
``npae.interop.to_keras(model, compile=True)`` (a U-Net with Add and Concatenate skips, two inputs
and two outputs with a shared layer, a VAE-like encoder and decoder nested in a model, without
sampling): predictions, losses with loss weights, and one SGD step.

Not needed by the tests; run it where Keras 3 (any backend) and npae are both installed:

    python benchmarks/keras_compare.py            # prints one line per check and a summary

(Keras is imported through ``npae.interop.import_keras``: with KERAS_BACKEND unset it picks an
installed backend.)

Each check builds the model in both libraries, copies npae's initial weights into Keras with
``set_weights(get_weights())`` (the same layouts and order), runs the same batch through both
and prints the largest difference, divided by the largest value compared where that exceeds 1
(an absolute difference for values up to 1, a relative one above), for npae's reference path
(``jit_compile=False``) and its fast path. Dropout and
GaussianNoise draw their own random numbers in each library, so they are compared in inference
(where both are the identity) and left out of the training steps. Each check has its tolerance
(1e-4, and for the graph models 1e-4 for predictions, 1e-5 for losses, 2e-3 for the weights after
a step); exit status 1 if any check exceeds its own.
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logging.getLogger("tensorflow").setLevel(logging.ERROR)  # (retracing notes: each check builds new models)

import numpy as np  # noqa: E402

import npae  # noqa: E402
from npae import layers as npae_layers  # noqa: E402
from npae.interop import import_keras, to_keras  # noqa: E402

keras = import_keras()
keras_layers = keras.layers

TOLERANCE = 1e-4
results: list[tuple[str, float, float]] = []  # (check, difference, tolerance)


def diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b))))


def check(name: str, got, want, tolerance: float = TOLERANCE) -> None:
    d = max(diff(g, w) for g, w in zip(got, want)) if isinstance(got, list) else diff(got, want)
    results.append((name, d, tolerance))
    print(f"{'ok  ' if d <= tolerance else 'FAIL'} {d:9.2e}  {name}", flush=True)


def both(build, input_shape):
    """The same architecture in both libraries (``build(L, x)`` with L the layers module), npae's
    initial weights copied into Keras."""
    npae.set_random_seed(0)
    ni = npae.Input(input_shape)
    nm = npae.Model(ni, build(npae_layers, ni))
    ki = keras.Input(input_shape)
    km = keras.Model(ki, build(keras_layers, ki))
    km.set_weights(nm.get_weights())
    return nm, km


def image_model(L, x):  # noqa: N803 - L: the layers module of either library
    x = L.GaussianNoise(0.1)(x)
    x = L.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.LeakyReLU(negative_slope=0.2)(x)
    x = L.Conv2D(6, 3, strides=2, padding="same", activation="elu")(x)
    x = L.Conv2DTranspose(5, 3, strides=2, padding="same", activation="tanh")(x)
    x = L.Dropout(0.3)(x)
    x = L.Conv2DTranspose(4, (4, 3), strides=2, padding="same", use_bias=False)(x)
    x = L.BatchNormalization(momentum=0.9, epsilon=1e-2, center=False)(x)
    x = L.ReLU()(x)
    return L.Conv2D(2, 3, padding="same", activation="sigmoid")(x)


def transpose_variants(L, x):  # noqa: N803 - valid padding, output_padding, strides 3, odd kernels
    x = L.Conv2DTranspose(3, 3, strides=3, padding="valid", activation="softplus")(x)  # 5 -> 15
    x = L.Conv2DTranspose(4, 2, strides=2, padding="valid", output_padding=1, activation="silu")(x)  # 15 -> 31
    x = L.Conv2D(3, 5, strides=2, padding="valid", activation="linear")(x)  # 31 -> 14
    x = L.Conv2DTranspose(2, (5, 3), strides=(1, 2), padding="same", output_padding=(0, 1))(x)
    return L.Activation("sigmoid")(x)


def dense_model(L, x):  # noqa: N803
    x = L.Dense(16, activation="tanh")(x)
    x = L.BatchNormalization(scale=False)(x)
    x = L.Dense(8, activation="leaky_relu")(x)
    x = L.Dropout(0.5)(x)
    x = L.Dense(16, activation="silu")(x)
    return L.Dense(20, activation="sigmoid")(x)


def no_noise(L, x):  # noqa: N803 - image_model without its random layers, for the training steps
    x = L.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.LeakyReLU(negative_slope=0.2)(x)
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="elu")(x)
    x = L.BatchNormalization(momentum=0.9)(x)
    x = L.ReLU()(x)
    return L.Conv2D(2, 3, padding="same", activation="sigmoid")(x)


OPTIMIZERS = {
    "SGD": lambda m: m.SGD(learning_rate=0.1),
    "SGD(momentum=0.9)": lambda m: m.SGD(learning_rate=0.1, momentum=0.9),
    "SGD(momentum=0.9, nesterov)": lambda m: m.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
    "RMSprop": lambda m: m.RMSprop(),
    "RMSprop(momentum=0.5, centered)": lambda m: m.RMSprop(momentum=0.5, centered=True),
    "Adam": lambda m: m.Adam(learning_rate=0.01),
    "Adadelta(1.0)": lambda m: m.Adadelta(learning_rate=1.0),
}


# -- graph models, built in npae and converted with npae.interop.to_keras ----------------------------
def unet_model():
    if hasattr(npae.autoencoders, "unet"):
        model = npae.autoencoders.unet(filters=(8, 16), seed=0)[0]
    else:  # (the same shape of graph: Add and Concatenate skips, strided Conv2DTranspose)
        L = npae_layers  # noqa: N806
        npae.set_random_seed(0)
        x = npae.Input((28, 28, 1), name="unet_input")
        c1 = L.Conv2D(8, 3, activation="relu", padding="same")(x)
        c2 = L.Conv2D(16, 3, activation="relu", padding="same")(L.MaxPooling2D()(c1))
        code = L.Conv2D(16, 3, activation="relu", padding="same")(L.MaxPooling2D()(c2))
        up2 = L.Conv2DTranspose(16, 3, strides=2, activation="relu", padding="same")(code)
        d2 = L.Conv2D(16, 3, activation="relu", padding="same")(L.Add()([up2, c2]))
        up1 = L.Conv2DTranspose(8, 3, strides=2, activation="relu", padding="same")(d2)
        d1 = L.Conv2D(8, 3, activation="relu", padding="same")(L.Concatenate()([up1, c1]))
        model = npae.Model(x, L.Conv2D(1, 3, activation="sigmoid", padding="same")(d1), name="unet")
    model.compile(optimizer=npae.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy", loss_weights=[0.7])
    return model


def two_in_two_out_model():
    L = npae_layers  # noqa: N806
    npae.set_random_seed(1)
    a, b = npae.Input((20,), name="a"), npae.Input((20,), name="b")
    shared = L.Dense(16, activation="tanh", name="shared")
    ha, hb = shared(a), shared(b)
    first = L.Dense(4, activation="sigmoid", name="first")(L.Subtract()([ha, hb]))
    h = L.Dense(12, activation="relu")(L.Concatenate()([L.Multiply()([ha, hb]), L.Maximum()([ha, hb])]))
    second = L.Dense(3, name="second")(L.Add()([h, L.Dense(12, activation="elu")(hb)]))
    model = npae.Model([a, b], [first, second], name="two_in_two_out")
    model.compile(optimizer=npae.optimizers.SGD(learning_rate=0.1), loss=["binary_crossentropy", "mse"],
                  loss_weights=[1.0, 0.5], metrics=[["mae"], ["mse"]])
    return model


def vae_like_model():
    L = npae_layers  # noqa: N806
    npae.set_random_seed(2)
    x = npae.Input((64,), name="vae_input")
    h = L.Dense(32, activation="relu", name="enc_hidden")(x)
    mu, logvar = L.Dense(8, name="mu")(h), L.Dense(8, name="logvar")(h)
    z = L.Average(name="z")([mu, logvar])  # (no sampling: a deterministic code)
    encoder = npae.Model(x, [mu, logvar, z], name="encoder")
    code = npae.Input((8,), name="code")
    decoder = npae.Model(code, L.Dense(64, activation="sigmoid", name="dec_out")(
        L.Dense(32, activation="relu", name="dec_hidden")(code)), name="decoder")
    y = npae.Input((64,), name="x")
    mu_y, _, z_y = encoder(y)
    model = npae.Model(y, {"reconstruction": decoder(z_y), "mu": mu_y}, name="vae_like")
    model.compile(optimizer=npae.optimizers.SGD(learning_rate=0.1),
                  loss={"reconstruction": "binary_crossentropy", "mu": "mse"},
                  loss_weights={"reconstruction": 1.0, "mu": 0.1})
    return model


def graph_checks(rng) -> None:
    """Each graph model on both npae paths against its to_keras twin: predictions, the losses with
    their loss weights (evaluate), and the weights after one SGD step (train_on_batch)."""
    img = rng.random((8, 28, 28, 1)).astype(np.float32)
    two_x = [rng.random((8, 20)).astype(np.float32) for _ in range(2)]
    two_y = [rng.random((8, 4)).astype(np.float32), rng.random((8, 3)).astype(np.float32)]
    vae_x = rng.random((8, 64)).astype(np.float32)
    vae_y = {"reconstruction": vae_x, "mu": rng.normal(0, 0.5, (8, 8)).astype(np.float32)}
    for name, build, x, y in [("U-Net (Add, Concatenate skips, Conv2DTranspose)", unet_model, img, img),
                              ("two inputs, two outputs, a shared layer", two_in_two_out_model, two_x, two_y),
                              ("VAE-like nested encoder (3 outputs) and decoder", vae_like_model, vae_x, vae_y)]:
        for jit, path in ((False, "reference"), (True, "fast")):
            nm = build()
            nm.jit_compile = jit
            km = to_keras(nm, compile=True)
            form = nm.output_names if isinstance(nm.output, dict) else None

            def flat(out, form=form):
                return [out[k] for k in form] if form else out

            check(f"{path:9s} predict: {name}", flat(nm.predict(x, verbose=0)), flat(km.predict(x, verbose=0)))
            mine = nm.evaluate(x, y, verbose=0, return_dict=True)
            theirs = km.evaluate(x, y, verbose=0, return_dict=True)
            keys = sorted(mine)
            assert keys == sorted(theirs), (keys, sorted(theirs))
            check(f"{path:9s} evaluate {', '.join(keys)} (loss weights): {name}", [mine[k] for k in keys],
                  [theirs[k] for k in keys], 1e-5)
            nm.train_on_batch(x, y)
            km.train_on_batch(x, y)
            check(f"{path:9s} 1 SGD step, weights: {name}", nm.get_weights(), km.get_weights(), 2e-3)


def main() -> int:
    print(f"Keras {keras.__version__} ({keras.backend.backend()} backend), npae {npae.__version__}")
    rng = np.random.default_rng(0)
    img = rng.random((8, 12, 12, 2)).astype(np.float32)
    for name, build, shape, x in [("image model (noise, strided conv, BN, LeakyReLU, conv^T, dropout)", image_model,
                                   (12, 12, 2), img),
                                  ("Conv2DTranspose variants (valid, output_padding, strides 3)", transpose_variants,
                                   (5, 5, 2), rng.random((4, 5, 5, 2)).astype(np.float32)),
                                  ("dense model (tanh, BN, leaky_relu, dropout, silu)", dense_model, (20,),
                                   rng.random((8, 20)).astype(np.float32))]:
        y = None
        for jit, path in ((False, "reference"), (True, "fast")):
            nm, km = both(build, shape)
            nm.jit_compile = jit
            check(f"{path:9s} predict: {name}", nm.predict(x, verbose=0), km.predict(x, verbose=0))
            if name.startswith("Conv2DTranspose"):
                continue
            y = rng.random((len(x), *nm.output_shape[1:])).astype(np.float32) if y is None else y
            for loss in ("mse", "mae", "binary_crossentropy"):
                nm.compile(optimizer="sgd", loss=loss, metrics=["mae", "mse", "binary_accuracy"], jit_compile=jit)
                km.compile(optimizer="sgd", loss=loss, metrics=["mae", "mse", "binary_accuracy"])
                check(f"{path:9s} evaluate {loss} + metrics: {name}", nm.evaluate(x, y, verbose=0),
                      km.evaluate(x, y, verbose=0))
    y = rng.random((8, 12, 12, 2)).astype(np.float32)
    for opt_name, make in OPTIMIZERS.items():
        for loss in ("mse", "binary_crossentropy"):
            for jit, path in ((False, "reference"), (True, "fast")):
                nm, km = both(no_noise, (12, 12, 2))
                nm.compile(optimizer=make(npae.optimizers), loss=loss, jit_compile=jit)
                km.compile(optimizer=make(keras.optimizers), loss=loss)
                for _ in range(2):  # two steps: the second uses the optimizer's slots
                    nl = nm.train_on_batch(img, y)
                    kl = km.train_on_batch(img, y)
                check(f"{path:9s} 2 training steps, {opt_name}, {loss}: loss", nl, kl)
                check(f"{path:9s} 2 training steps, {opt_name}, {loss}: weights and moving statistics",
                      nm.get_weights(), km.get_weights())
    graph_checks(rng)
    worst = max(d for _, d, _ in results)
    bad = [n for n, d, tolerance in results if d > tolerance]
    print(f"{len(results)} checks, largest difference {worst:.2e}; "
          + ("all within their tolerances" if not bad else f"{len(bad)} above their tolerances"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
