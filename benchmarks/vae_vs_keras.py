"""The Keras blog's MLP variational autoencoder trained for 5 epochs on the 10,000 real MNIST test
images, in npae and in Keras 3 from the same initial weights: the final losses should agree within
a few percent (each draws its own noise, so they differ by chance).

Keras's model is the VAE as Keras programs write it today: a ``Sampling`` layer whose ``call``
draws eps and ``add_loss``-es the KL term (weighted 1/784, as npae's ``Sampling(kl_weight=1/784)``
in ``npae.autoencoders.vae``), compiled with Adam and binary cross-entropy. Not part of the test
suite; run it where Keras 3 (any backend) and npae are installed:

    python benchmarks/vae_vs_keras.py [--epochs 5] [--seeds 3]

It prints each run's final training loss and the ratio npae / Keras (median over the seeds).
"""

from __future__ import annotations

import argparse
import statistics

import npae
from npae import autoencoders
from npae.datasets import mnist
from npae.interop import import_keras


def keras_vae(keras, kl_weight: float):
    from keras import layers, ops

    class Sampling(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = keras.random.SeedGenerator(1337)

        def call(self, inputs):
            z_mean, z_log_var = inputs
            eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
            kl = -0.5 * ops.mean(ops.sum(1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=1))
            self.add_loss(kl_weight * kl)
            return z_mean + ops.exp(0.5 * z_log_var) * eps

    x = keras.Input((784,))
    h = layers.Dense(256, activation="relu")(x)
    z_mean, z_log_var = layers.Dense(2)(h), layers.Dense(2)(h)
    encoder = keras.Model(x, [z_mean, z_log_var, Sampling()([z_mean, z_log_var])])
    code = keras.Input((2,))
    decoder = keras.Model(code, layers.Dense(784, activation="sigmoid")(layers.Dense(256, activation="relu")(code)))
    model = keras.Model(x, decoder(encoder(x)[2]))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7), loss="binary_crossentropy")
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    keras = import_keras()
    x = mnist.load_test_data()[0].reshape(-1, 784).astype("float32") / 255.0
    ratios = []
    for seed in range(args.seeds):
        model, _, _ = autoencoders.vae(seed=seed)
        k = keras_vae(keras, 1.0 / 784)
        k.set_weights(model.get_weights())  # (the same layouts and order)
        npae.set_random_seed(seed)
        ours = model.fit(x, x, epochs=args.epochs, batch_size=128, verbose=0, seed=seed).history["loss"][-1]
        theirs = k.fit(x, x, epochs=args.epochs, batch_size=128, verbose=0).history["loss"][-1]
        ratios.append(ours / theirs)
        print(f"seed {seed}: npae {ours:.5f}  Keras {theirs:.5f}  npae / Keras {ours / theirs:.4f}", flush=True)
    print(f"Keras {keras.__version__} ({keras.backend.backend()}): median npae / Keras {statistics.median(ratios):.4f} "
          f"over {len(ratios)} seeds, {args.epochs} epochs")


if __name__ == "__main__":
    main()
