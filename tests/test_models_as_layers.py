"""Models as layers: a Model (or Sequential) called on a tensor is one node of another model,
sharing its weights; a Model subclass whose call() composes layers is traced at its first build
and then runs as a graph (the TensorFlow "Intro to autoencoders" style)."""

import numpy as np
import pytest

import npae
from npae import layers, losses
from npae.layers import Conv2D, Conv2DTranspose, Dense, Flatten, Input, Reshape
from npae.models import Model, Sequential, load_model


def encoder_decoder():
    """The Keras 2 examples' denoiser shape: encoder and decoder Models, autoencoder =
    Model(inputs, decoder(encoder(inputs)))."""
    npae.set_random_seed(0)
    inputs = Input((12,), name="encoder_input")
    z = Dense(4, activation="relu", name="latent")(Dense(8, activation="relu", name="enc")(inputs))
    encoder = Model(inputs, z, name="encoder")
    latent = Input((4,), name="decoder_input")
    hidden = Dense(8, activation="relu", name="dec")(latent)
    decoder = Model(latent, Dense(12, activation="sigmoid", name="out")(hidden), name="decoder")
    autoencoder = Model(inputs, decoder(encoder(inputs)), name="autoencoder")
    return encoder, decoder, autoencoder


def data(n=16, d=12, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 0.95, (n, d)).astype(np.float32)


@pytest.mark.parametrize("jit", [False, True])
def test_training_the_outer_model_trains_the_inner_ones(jit):
    encoder, decoder, autoencoder = encoder_decoder()
    autoencoder.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=jit)
    x = data()
    before = encoder.predict(x, verbose=0)
    autoencoder.fit(x, x, epochs=3, batch_size=8, verbose=0)
    after = encoder.predict(x, verbose=0)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(decoder.predict(after, verbose=0), autoencoder.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    assert autoencoder.count_params() == encoder.count_params() + decoder.count_params()
    assert autoencoder.get_weights()[0] is not encoder.get_weights()[0]  # copies ...
    assert np.array_equal(autoencoder.get_weights()[0], encoder.get_weights()[0])  # ... of one weight


def test_a_nested_model_is_one_layer_in_layers_get_layer_and_summary(capsys):
    encoder, decoder, autoencoder = encoder_decoder()
    assert [layer.name for layer in autoencoder.layers] == ["encoder_input", "encoder", "decoder"]
    assert autoencoder.get_layer("encoder") is encoder
    assert autoencoder.get_layer("decoder").get_layer("dec").units == 8
    autoencoder.summary()
    out = capsys.readouterr().out
    assert "encoder (Functional)" in out and "decoder (Functional)" in out and "(None, 4)" in out
    assert f"Total params: {autoencoder.count_params():,}" in out
    with pytest.raises(ValueError, match="no layer named 'enc'"):
        autoencoder.get_layer("enc")  # (the inner model's layers are its own, as in Keras)


def test_a_model_with_three_outputs_is_indexed_like_keras():
    npae.set_random_seed(1)
    x = Input((6,), name="vae_input")
    h = Dense(5, activation="relu")(x)
    z_mean, z_log_var = Dense(2, name="z_mean")(h), Dense(2, name="z_log_var")(h)
    encoder = Model(x, [z_mean, z_log_var, npae.layers.Average(name="z")([z_mean, z_log_var])], name="encoder")
    code = Input((2,))
    decoder = Model(code, Dense(6, activation="sigmoid")(code), name="decoder")
    outputs = decoder(encoder(x)[2])
    vae = Model(x, outputs, name="vae")
    assert [layer.name for layer in vae.layers] == ["vae_input", "encoder", "decoder"]
    vae.compile(optimizer="adam", loss="mse")
    xv = data(8, 6)
    vae.fit(xv, xv, epochs=2, verbose=0)
    z_mean_v, z_log_var_v, z_v = encoder.predict(xv, verbose=0)
    np.testing.assert_allclose(z_v, (z_mean_v + z_log_var_v) / 2, rtol=1e-6)
    np.testing.assert_allclose(decoder.predict(z_v, verbose=0), vae.predict(xv, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_frozen_inner_model_takes_no_update_on_either_path():
    for jit in (False, True):
        encoder, decoder, autoencoder = encoder_decoder()
        encoder.trainable = False
        autoencoder.compile(optimizer="adam", loss="mse", jit_compile=jit)
        x = data()
        frozen, trained = encoder.get_weights(), decoder.get_weights()
        autoencoder.fit(x, x, epochs=2, batch_size=8, verbose=0)
        assert all(np.array_equal(a, b) for a, b in zip(frozen, encoder.get_weights()))
        assert not all(np.array_equal(a, b) for a, b in zip(trained, decoder.get_weights()))
        assert autoencoder.count_params() > sum(w.size for w in autoencoder.trainable_weights)


def test_sequentials_inside_sequentials():
    npae.set_random_seed(0)
    encoder = Sequential([Input((12,)), Dense(6, activation="relu"), Dense(3, activation="relu")], name="enc")
    decoder = Sequential([Dense(6, activation="relu"), Dense(12, activation="sigmoid")], name="dec")
    model = Sequential([encoder, decoder], name="ae")
    assert model.output_shape == (None, 12) and decoder.input_shape == (None, 3)
    model.compile(optimizer="adam", loss="mse")
    x = data()
    model.fit(x, x, epochs=1, verbose=0)
    np.testing.assert_allclose(decoder.predict(encoder.predict(x, verbose=0), verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_calling_a_model_on_a_tensor_of_the_wrong_shape_names_both():
    encoder, _, _ = encoder_decoder()
    with pytest.raises(ValueError, match=r"encoder takes inputs of shapes \[\(None, 12\)\], got \[\(None, 10\)\]"):
        encoder(Input((10,)))


def test_the_same_model_called_twice_shares_its_weights():
    npae.set_random_seed(0)
    shared = Sequential([Input((5,)), Dense(5, activation="tanh")], name="tower")
    a, b = Input((5,), name="a"), Input((5,), name="b")
    model = Model([a, b], npae.layers.Subtract()([shared(a), shared(b)]))  # a siamese model
    assert model.count_params() == shared.count_params() == 30
    for jit in (False, True):
        model.compile(optimizer="sgd", loss="mse", jit_compile=jit)
        report = npae.check_model(model, [data(4, 5), data(4, 5, 1)], data(4, 5, 2) - 0.5, jit_compile=jit)
        assert report.passed and len(report.checks) == 2


# -- subclassed models ----------------------------------------------------------------------
class Autoencoder(Model):
    """The TensorFlow tutorial's first model, as written there."""

    def __init__(self, latent_dim, shape):
        super().__init__()
        self.latent_dim = latent_dim
        self.shape = shape
        self.encoder = Sequential([layers.Flatten(), layers.Dense(latent_dim, activation="relu")])
        self.decoder = Sequential([layers.Dense(int(np.prod(shape)), activation="sigmoid"), layers.Reshape(shape)])

    def call(self, x):
        encoded = self.encoder(x)
        decoded = self.decoder(encoded)
        return decoded


class Denoise(Model):
    """The tutorial's convolutional denoiser."""

    def __init__(self):
        super().__init__()
        self.encoder = Sequential([Input(shape=(8, 8, 1)), Conv2D(4, (3, 3), activation="relu", padding="same",
                                                                  strides=2)])
        self.decoder = Sequential([Conv2DTranspose(4, kernel_size=3, strides=2, activation="relu", padding="same"),
                                   Conv2D(1, kernel_size=(3, 3), activation="sigmoid", padding="same")])

    def call(self, x, training=None):
        return self.decoder(self.encoder(x))


@pytest.mark.parametrize("jit", [False, True])
def test_a_subclassed_model_is_traced_at_its_first_batch_and_runs_as_a_graph(jit, tmp_path):
    npae.set_random_seed(0)
    x = np.random.default_rng(0).random((32, 6, 5)).astype(np.float32)
    model = Autoencoder(4, x.shape[1:])
    assert not model.built
    model.compile(optimizer="adam", loss=losses.MeanSquaredError(), jit_compile=jit)
    history = model.fit(x, x, epochs=2, shuffle=True, validation_data=(x[:8], x[:8]), verbose=0)
    assert model.built and set(history.history) == {"loss", "val_loss"}
    assert [layer.name for layer in model.layers] == [model.encoder.name, model.decoder.name]
    encoded = model.encoder(x[:4])
    np.testing.assert_allclose(model.decoder(encoded), model.predict(x[:4], verbose=0), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "ae.npz")
    loaded = load_model(tmp_path / "ae.npz")  # (as a functional model of the traced graph)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)
    model.save_weights(tmp_path / "w.npz")
    fresh = Autoencoder(4, x.shape[1:])
    fresh.build((None, 6, 5))
    fresh.load_weights(tmp_path / "w.npz")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)


def test_the_tutorials_denoiser_and_its_summary(capsys):
    npae.set_random_seed(0)
    model = Denoise()
    model.compile(optimizer="adam", loss=losses.MeanSquaredError())
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype(np.float32)
    model.fit(x, x, epochs=1, verbose=0)
    model.encoder.summary()
    model.summary()
    out = capsys.readouterr().out
    assert "(None, 4, 4, 4)" in out and "(Sequential)" in out
    assert model.count_params() == model.encoder.count_params() + model.decoder.count_params()


def test_a_call_that_needs_automatic_differentiation_is_refused_with_the_way_out():
    class Scaled(Model):
        def __init__(self):
            super().__init__()
            self.dense = Dense(3)

        def call(self, x):
            return self.dense(x) * 2.0

    model = Scaled()
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(TypeError, match=r"scaled.call: the operator \* .*no automatic differentiation.*forward"):
        model.fit(np.ones((4, 3)), np.ones((4, 3)), verbose=0)


def test_build_with_keras_shape_then_summary():
    npae.set_random_seed(0)
    model = Autoencoder(3, (4, 4))
    with pytest.raises(ValueError, match="has not been built yet"):
        model.summary()
    model.build((None, 4, 4))
    assert model.output_shape == (None, 4, 4) and model.count_params() == 16 * 3 + 3 + 3 * 16 + 16


def test_flatten_reshape_sequential_without_input_is_built_by_its_first_call():
    npae.set_random_seed(0)
    model = Sequential([Flatten(), Dense(6, activation="sigmoid"), Reshape((2, 3))])
    assert not model.built
    out = model(np.ones((2, 3, 2), np.float32))
    assert out.shape == (2, 2, 3) and model.input_shape == (None, 3, 2)
