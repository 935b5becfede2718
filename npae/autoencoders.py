"""The six autoencoders of the Keras tutorial "Building Autoencoders in Keras", and one in the form
today's convolutional autoencoders take (``transposed``).

Each builder returns ``(autoencoder, encoder, decoder)``: three models sharing the same layers (so
training the autoencoder trains the other two), the autoencoder compiled with the tutorial's
settings. Every size is an argument; ``seed`` makes the initial weights reproducible.

The tutorial's deep autoencoder has a bug: in its published code the final ``Dense(784, sigmoid)``
is connected to the 64-unit layer instead of the last decoder layer, so the decoder it just built is
bypassed. ``deep`` builds the symmetric model the text describes:
784 -> 128 -> 64 -> 32 -> 64 -> 128 -> 784.
"""

from __future__ import annotations

import numpy as np

from . import regularizers
from .layers import (
    Add,
    BatchNormalization,
    Concatenate,
    Conv2D,
    Conv2DTranspose,
    Dense,
    Flatten,
    GaussianNoise,
    Input,
    MaxPooling2D,
    ReLU,
    Reshape,
    Sampling,
    UpSampling2D,
)
from .models import Model
from .random import seeded

__all__ = ["vanilla", "multilayer", "deep", "convolutional", "sparse", "denoising", "transposed", "unet", "vae",
           "conv_vae", "BUILDERS",
           "DEFAULTS"]

# The tutorial's training settings per model (used by the CLI as defaults).
DEFAULTS = {
    "vanilla": {"epochs": 50, "batch_size": 256, "optimizer": "adam", "loss": "mse"},
    "multilayer": {"epochs": 50, "batch_size": 256, "optimizer": "adam", "loss": "mse"},
    "deep": {"epochs": 100, "batch_size": 256, "optimizer": "adadelta", "loss": "binary_crossentropy"},
    "convolutional": {"epochs": 50, "batch_size": 128, "optimizer": "adadelta", "loss": "binary_crossentropy"},
    "sparse": {"epochs": 100, "batch_size": 256, "optimizer": "adam", "loss": "mse"},
    "denoising": {"epochs": 100, "batch_size": 128, "optimizer": "adadelta", "loss": "binary_crossentropy"},
    "transposed": {"epochs": 20, "batch_size": 128, "optimizer": "adam", "loss": "binary_crossentropy"},
    "unet": {"epochs": 10, "batch_size": 128, "optimizer": "adam", "loss": "binary_crossentropy"},
    "vae": {"epochs": 50, "batch_size": 128, "optimizer": "adam", "loss": "binary_crossentropy"},
    "conv_vae": {"epochs": 30, "batch_size": 128, "optimizer": "adam", "loss": "binary_crossentropy"},
}


def _dense_stack(name, encoder_units, decoder_units, input_dim, optimizer, loss, seed, code_regularizer=None):
    """784 -> encoder_units (relu) ... -> decoder_units (relu) ... -> input_dim (sigmoid)."""
    with seeded(seed):
        x = Input(shape=(input_dim,), name=f"{name}_input")
        h = x
        for i, units in enumerate(encoder_units):
            last = i == len(encoder_units) - 1
            h = Dense(units, activation="relu", activity_regularizer=code_regularizer if last else None)(h)
        code = h
        for units in decoder_units:
            h = Dense(units, activation="relu")(h)
        out = Dense(input_dim, activation="sigmoid")(h)
    return _three_models(name, x, code, out, len(encoder_units), optimizer, loss)


def _three_models(name, x, code, out, n_encoder_layers, optimizer, loss):
    """The autoencoder x -> out, the encoder x -> code, and a decoder that applies the autoencoder's
    remaining layers (the same objects: weights are shared) to a new code Input."""
    autoencoder = Model(x, out, name=name)
    encoder = Model(x, code, name=f"{name}_encoder")
    code_in = Input(shape=code.shape[1:], name=f"{name}_code")
    t = code_in
    for layer in autoencoder.layers[1 + n_encoder_layers:]:
        t = layer(t)
    decoder = Model(code_in, t, name=f"{name}_decoder")
    autoencoder.compile(optimizer=optimizer, loss=loss)
    return autoencoder, encoder, decoder


def vanilla(encoding_dim: int = 64, input_dim: int = 784, optimizer="adam", loss="mse", seed: int | None = None):
    """784 -> encoding_dim (relu) -> 784 (sigmoid). The tutorial's first program uses
    ``vanilla(32, optimizer='adadelta', loss='binary_crossentropy')``."""
    return _dense_stack("vanilla", [encoding_dim], [], input_dim, optimizer, loss, seed)


def multilayer(hidden: int = 128, encoding_dim: int = 64, input_dim: int = 784, optimizer="adam", loss="mse",
               seed: int | None = None):
    """784 -> 128 -> 64 -> 128 -> 784."""
    return _dense_stack("multilayer", [hidden, encoding_dim], [hidden], input_dim, optimizer, loss, seed)


def deep(units=(128, 64, 32), input_dim: int = 784, optimizer="adadelta", loss="binary_crossentropy",
         seed: int | None = None):
    """784 -> 128 -> 64 -> 32 -> 64 -> 128 -> 784, the symmetric model the tutorial intended."""
    units = list(units)
    return _dense_stack("deep", units, units[-2::-1], input_dim, optimizer, loss, seed)


def sparse(encoding_dim: int = 64, l1: float = 1e-4, input_dim: int = 784, optimizer="adam", loss="mse",
           seed: int | None = None):
    """vanilla with an L1 activity penalty on the code (the tutorial's ``l1(10e-5)``, i.e. 1e-4)."""
    return _dense_stack("sparse", [encoding_dim], [], input_dim, optimizer, loss, seed,
                        code_regularizer=regularizers.l1(l1))


def _conv_stack(name, enc_filters, dec_filters, valid_index, input_shape, optimizer, loss, seed):
    """Conv(relu, same) + MaxPool(same) per encoder filter count; Conv + UpSampling per decoder count
    (the one at ``valid_index`` uses 'valid' padding); a final 1-filter sigmoid conv."""
    with seeded(seed):
        x = Input(shape=input_shape, name=f"{name}_input")
        h = x
        for f in enc_filters:
            h = Conv2D(f, (3, 3), activation="relu", padding="same")(h)
            h = MaxPooling2D((2, 2), padding="same")(h)
        code = h
        for i, f in enumerate(dec_filters):
            h = Conv2D(f, (3, 3), activation="relu", padding="valid" if i == valid_index else "same")(h)
            h = UpSampling2D((2, 2))(h)
        out = Conv2D(input_shape[-1], (3, 3), activation="sigmoid", padding="same")(h)
    return _three_models(name, x, code, out, 2 * len(enc_filters), optimizer, loss)


def convolutional(filters=(16, 8, 8), input_shape=(28, 28, 1), optimizer="adadelta", loss="binary_crossentropy",
                  seed: int | None = None):
    """28x28x1 -> conv 16/8/8 with 'same' 2x2 max-pooling -> (4, 4, 8) code -> conv 8/8/16 with 2x2
    upsampling (the 16-filter conv 'valid': 16 -> 14) -> 28x28x1 sigmoid."""
    f = list(filters)
    return _conv_stack("convolutional", f, f[::-1], len(f) - 1, input_shape, optimizer, loss, seed)


def denoising(filters: int = 32, input_shape=(28, 28, 1), optimizer="adadelta", loss="binary_crossentropy",
              seed: int | None = None):
    """The tutorial's denoiser: conv 32/32 with pooling to (7, 7, 32), conv 32/32 with upsampling, sigmoid
    conv. Train it on ``npae.datasets.add_noise(x)`` against the clean ``x``."""
    return _conv_stack("denoising", [filters, filters], [filters, filters], -1, input_shape, optimizer, loss, seed)


def transposed(filters=(32, 64), noise: float = 0.2, input_shape=(28, 28, 1), optimizer="adam",
               loss="binary_crossentropy", seed: int | None = None):
    """A denoising autoencoder as they are written today: GaussianNoise(noise) on the input (in
    training only: the model is trained on clean images, ``fit(x, x)``), then per encoder filter
    count a strided 3x3 Conv2D (stride 2, 'same', no bias) + BatchNormalization + ReLU (28 -> 14 ->
    7: the code is (7, 7, 64)), then per decoder filter count a strided Conv2DTranspose (stride 2,
    'same', no bias) + BatchNormalization + ReLU (7 -> 14 -> 28), and a 3x3 sigmoid Conv2D."""
    with seeded(seed):
        x = Input(shape=input_shape, name="transposed_input")
        h = GaussianNoise(noise)(x) if noise else x
        for f in filters:
            h = Conv2D(f, (3, 3), strides=2, padding="same", use_bias=False)(h)
            h = ReLU()(BatchNormalization()(h))
        code = h
        for f in filters[::-1]:
            h = Conv2DTranspose(f, (3, 3), strides=2, padding="same", use_bias=False)(h)
            h = ReLU()(BatchNormalization()(h))
        out = Conv2D(input_shape[-1], (3, 3), activation="sigmoid", padding="same")(h)
    return _three_models("transposed", x, code, out, (1 if noise else 0) + 3 * len(filters), optimizer, loss)


def vae(intermediate_dim: int = 256, latent_dim: int = 2, input_dim: int = 784, optimizer="adam",
        loss="binary_crossentropy", seed: int | None = None):
    """The Keras blog's variational autoencoder: 784 -> 256 (relu) -> z_mean, z_log_var (2 each) ->
    Sampling -> 256 (relu) -> 784 (sigmoid). The objective is the blog's divided by the 784 pixels:
    binary cross-entropy (a mean over the pixels) plus the KL term of ``Sampling(kl_weight=1/784)``.
    Returns ``(vae, encoder, decoder)``: the encoder's outputs are [z_mean, z_log_var, z], the
    decoder maps a code to an image, and the VAE is ``Model(x, decoder(encoder(x)[2]))``."""
    with seeded(seed):
        x = Input(shape=(input_dim,), name="encoder_input")
        h = Dense(intermediate_dim, activation="relu")(x)
        z_mean = Dense(latent_dim, name="z_mean")(h)
        z_log_var = Dense(latent_dim, name="z_log_var")(h)
        z = Sampling(kl_weight=1.0 / input_dim, name="z")([z_mean, z_log_var])
        encoder = Model(x, [z_mean, z_log_var, z], name="encoder")
        code = Input(shape=(latent_dim,), name="z_sampling")
        out = Dense(input_dim, activation="sigmoid")(Dense(intermediate_dim, activation="relu")(code))
        decoder = Model(code, out, name="decoder")
    model = Model(x, decoder(encoder(x)[2]), name="vae_mlp")
    model.compile(optimizer=optimizer, loss=loss)
    return model, encoder, decoder


def conv_vae(latent_dim: int = 2, input_shape=(28, 28, 1), optimizer="adam", loss="binary_crossentropy",
             seed: int | None = None):
    """keras-io's convolutional VAE: two strided 3x3 Conv2D (32, 64; relu, 'same') -> Dense(16) ->
    z_mean, z_log_var -> Sampling; the decoder Dense(7*7*64) -> Reshape -> two strided
    Conv2DTranspose (64, 32) -> a sigmoid Conv2DTranspose. The objective is keras-io's (summed
    over the pixels) divided by the 784 pixels, as :func:`vae`'s. Returns ``(vae, encoder,
    decoder)``."""
    pixels = int(np.prod(input_shape))
    with seeded(seed):
        x = Input(shape=input_shape, name="encoder_input")
        h = Conv2D(32, 3, activation="relu", strides=2, padding="same")(x)
        h = Conv2D(64, 3, activation="relu", strides=2, padding="same")(h)
        h = Dense(16, activation="relu")(Flatten()(h))
        z_mean = Dense(latent_dim, name="z_mean")(h)
        z_log_var = Dense(latent_dim, name="z_log_var")(h)
        z = Sampling(kl_weight=1.0 / pixels, name="z")([z_mean, z_log_var])
        encoder = Model(x, [z_mean, z_log_var, z], name="encoder")
        code = Input(shape=(latent_dim,), name="latent_input")
        h = Reshape((input_shape[0] // 4, input_shape[1] // 4, 64))(
            Dense((input_shape[0] // 4) * (input_shape[1] // 4) * 64, activation="relu")(code))
        h = Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(h)
        h = Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(h)
        out = Conv2DTranspose(input_shape[-1], 3, activation="sigmoid", padding="same")(h)
        decoder = Model(code, out, name="decoder")
    model = Model(x, decoder(encoder(x)[2]), name="conv_vae")
    model.compile(optimizer=optimizer, loss=loss)
    return model, encoder, decoder


def unet(filters=(32, 64), input_shape=(28, 28, 1), optimizer="adam", loss="binary_crossentropy",
         seed: int | None = None):
    """A U-Net-style denoiser: a graph, not a chain. Two 3x3 'same' Conv2D + 2x2 max-pooling stages
    (28 -> 14 -> 7) and a 3x3 Conv2D at the bottom (the (7, 7, filters[1]) code); back up, a
    strided Conv2DTranspose (7 -> 14) whose output is *added* to the encoder's 14x14 features (an
    Add skip), a Conv2D, a strided Conv2DTranspose (14 -> 28) *concatenated* with the encoder's
    28x28 features (a Concatenate skip), a Conv2D and a 1-filter sigmoid Conv2D. Train it on noisy
    images against clean ones (``npae train unet`` does). Returns ``(unet, encoder, None)``: the
    decoder reads the encoder's skips, so it is no model of its own."""
    f1, f2 = filters
    with seeded(seed):
        x = Input(shape=input_shape, name="unet_input")
        c1 = Conv2D(f1, (3, 3), activation="relu", padding="same")(x)  # 28x28
        c2 = Conv2D(f2, (3, 3), activation="relu", padding="same")(MaxPooling2D((2, 2))(c1))  # 14x14
        code = Conv2D(f2, (3, 3), activation="relu", padding="same")(MaxPooling2D((2, 2))(c2))  # 7x7
        up2 = Conv2DTranspose(f2, (3, 3), strides=2, activation="relu", padding="same")(code)  # 14x14
        d2 = Conv2D(f2, (3, 3), activation="relu", padding="same")(Add()([up2, c2]))
        up1 = Conv2DTranspose(f1, (3, 3), strides=2, activation="relu", padding="same")(d2)  # 28x28
        d1 = Conv2D(f1, (3, 3), activation="relu", padding="same")(Concatenate()([up1, c1]))
        out = Conv2D(input_shape[-1], (3, 3), activation="sigmoid", padding="same")(d1)
    model = Model(x, out, name="unet")
    encoder = Model(x, code, name="unet_encoder")
    model.compile(optimizer=optimizer, loss=loss)
    return model, encoder, None


BUILDERS = {"vanilla": vanilla, "multilayer": multilayer, "deep": deep, "convolutional": convolutional,
            "sparse": sparse, "denoising": denoising, "transposed": transposed, "unet": unet, "vae": vae,
            "conv_vae": conv_vae}
