"""The Keras idioms a ported program uses, with Keras's semantics: npae.Input, get_layer,
validation_split, save_weights / load_weights, ModelCheckpoint(save_weights_only=True),
predict_on_batch, to_json / model_from_json, trainable and non-trainable weights, summary
counts, load_model(custom_objects=), compile's defaults."""

import json

import numpy as np
import pytest

import npae
from npae import callbacks, layers
from npae.layers import BatchNormalization, Dense
from npae.models import Model, Sequential, load_model, model_from_json
from npae.saving import ModelFileError


def small(seed=0, name=None):
    npae.set_random_seed(seed)
    inp = npae.Input(shape=(12,))
    h = Dense(6, activation="tanh", name="code")(inp)
    out = Dense(12, activation="sigmoid", name="out")(h)
    return Model(inp, out, name=name)


def data(n=40, seed=0):
    return np.random.default_rng(seed).random((n, 12)).astype(np.float32)


def test_input_is_the_same_at_both_addresses():
    assert npae.Input is layers.Input
    t = npae.Input(shape=(28, 28, 1), name="img")
    assert tuple(t.shape) == (None, 28, 28, 1)


def test_get_layer_by_name_and_index():
    model = small()
    assert model.get_layer("code") is model.layers[1] and model.get_layer(index=2).name == "out"
    assert model.get_layer(index=-1).name == "out"
    with pytest.raises(ValueError, match="exactly one of name= or index="):
        model.get_layer()
    with pytest.raises(ValueError, match="exactly one of name= or index="):
        model.get_layer("code", index=1)
    with pytest.raises(ValueError, match="no layer named 'nope'|'nope'"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match=r"index must be an int in \[0, 3\)"):
        model.get_layer(index=3)


def test_validation_split_takes_the_last_fraction_before_shuffling():
    x = data(40)
    model = small()
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, x, epochs=1, batch_size=8, validation_split=0.25, verbose=0)
    # the validation loss is measured on x[30:] with the weights at the end of the epoch
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(x[30:], x[30:], verbose=0), rel=1e-6)
    assert history.history["val_loss"][0] != pytest.approx(model.evaluate(x[:10], x[:10], verbose=0), rel=1e-3)
    with pytest.raises(ValueError, match=r"validation_split must be a number in \(0, 1\)"):
        model.fit(x, x, validation_split=1.5, verbose=0)


def test_save_weights_and_load_weights(tmp_path):
    x = data()
    model = small(seed=0)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, x, epochs=1, batch_size=8, verbose=0)
    model.save_weights(tmp_path / "w.npz")
    other = small(seed=1)
    assert not np.allclose(other.predict(x, verbose=0), model.predict(x, verbose=0))
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="names a Keras format"):
        model.save_weights(tmp_path / "w.weights.h5")
    different = Sequential([npae.Input((12,)), Dense(5), Dense(12)])
    with pytest.raises(ModelFileError, match="holds a different architecture"):
        different.load_weights(tmp_path / "w.npz")


def test_model_checkpoint_saves_weights_only(tmp_path):
    x = data()
    model = small()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    ckpt = callbacks.ModelCheckpoint(str(tmp_path / "w-{epoch:02d}-{val_mae:.3f}.npz"), monitor="val_mae",
                                     save_best_only=True, save_weights_only=True)
    model.fit(x, x, epochs=2, batch_size=8, validation_data=(x, x), verbose=0, callbacks=[ckpt])
    files = sorted(tmp_path.glob("w-*.npz"))
    assert files and files[0].name.startswith("w-01-")
    restored = small(seed=5)
    restored.load_weights(files[-1])
    assert load_model(files[-1]).optimizer is None  # weights only: no optimizer state


def test_predict_on_batch_is_predict():
    x = data(10)
    model = small()
    np.testing.assert_array_equal(model.predict_on_batch(x), model.predict(x, verbose=0))


def test_to_json_and_model_from_json_round_trip():
    model = small()
    model.get_layer("code").trainable = False
    text = model.to_json()
    assert json.loads(text)["class_name"] == "Functional"  # (Keras's name for a functional model)
    rebuilt = model_from_json(text)
    assert [type(layer).__name__ for layer in rebuilt.layers] == [type(layer).__name__ for layer in model.layers]
    assert [layer.get_config() for layer in rebuilt.layers] == [layer.get_config() for layer in model.layers]
    assert rebuilt.optimizer is None  # the architecture only
    rebuilt.set_weights(model.get_weights())
    x = data(5)
    np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0))
    assert json.loads(model.to_json(indent=2)) == json.loads(text)  # kwargs go to json.dumps


@pytest.mark.parametrize("text, message", [
    ("not json", "expected the JSON string Model.to_json"),
    ("[1, 2]", "expected the JSON object"),
    ('{"module": "keras", "class_name": "Sequential", "config": {}}', "describes a Keras model"),
    ('{"format": "npae.model", "config": {"layers": [], "input_shape": "x"}}', "does not describe a consistent"),
])
def test_model_from_json_refuses_what_it_cannot_read(text, message):
    with pytest.raises(ValueError, match=message):
        model_from_json(text)


def test_trainable_and_non_trainable_weights_and_the_summary(capsys):
    npae.set_random_seed(0)
    model = Sequential([npae.Input((12,)), Dense(6, name="a"), BatchNormalization(name="bn"), Dense(12, name="b")])
    assert len(model.trainable_weights) == 6 and len(model.non_trainable_weights) == 2  # moving mean, variance
    model.get_layer("a").trainable = False
    assert len(model.trainable_weights) == 4 and len(model.non_trainable_weights) == 4
    model.summary()
    out = capsys.readouterr().out
    # a: 12*6+6 = 78, bn: 4*6 = 24 (12 trainable), b: 6*12+12 = 84
    assert "Total params: 186" in out and "Trainable params: 96" in out and "Non-trainable params: 90" in out


class Scale(layers.Layer):
    """A custom layer: y = x * s, one trainable scalar per feature."""

    param_order = ("s",)

    def weight_shapes(self, input_shape):
        return {"s": (input_shape[-1],)}

    def _create_params(self, input_shape, rng):
        self.params["s"] = np.ones(input_shape[-1], self.dtype)

    def forward(self, x, training=False):
        x = self._check_input(x)
        return x * self.params["s"], x

    def backward(self, dout, cache):
        return dout * self.params["s"], {"s": (dout * cache).sum(axis=0)}


def test_load_model_with_custom_objects(tmp_path):
    model = Sequential([npae.Input((4,)), Scale(name="scale"), Dense(4)])
    model.get_layer("scale").params["s"][...] = [1, 2, 3, 4]
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match="unknown layer class 'Scale'"):
        load_model(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz", custom_objects={"Scale": Scale})
    np.testing.assert_array_equal(loaded.get_layer("scale").params["s"], [1, 2, 3, 4])
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_compile_defaults_to_rmsprop_as_keras():
    model = small()
    model.compile(loss="mse")
    assert type(model.optimizer).__name__ == "RMSprop"
    with pytest.raises(ValueError, match="give a loss"):
        model.compile()


def test_fit_evaluate_and_the_batch_methods_take_kerass_positional_order():
    # a Keras program may pass these positionally: the same position means the same argument
    x = data(16)
    model = small()
    model.compile("adam", "mse")
    with pytest.raises(NotImplementedError, match="sample_weight"):
        model.train_on_batch(x, x, np.ones(16))  # (x, y, sample_weight, class_weight, return_dict)
    with pytest.raises(NotImplementedError, match="class_weight"):
        model.train_on_batch(x, x, None, {0: 1.0})
    assert set(model.train_on_batch(x, x, None, None, True)) == {"loss"}
    with pytest.raises(NotImplementedError, match="sample_weight"):
        model.test_on_batch(x, x, np.ones(16))  # (x, y, sample_weight, return_dict)
    assert set(model.test_on_batch(x, x, None, True)) == {"loss"}
    with pytest.raises(NotImplementedError, match="sample_weight"):
        model.evaluate(x, x, 8, 0, np.ones(16))  # (x, y, batch_size, verbose, sample_weight, steps, ...)
    assert set(model.evaluate(x, x, 8, 0, None, None, None, True)) == {"loss"}
    with pytest.raises(NotImplementedError, match="class_weight"):
        model.fit(x, x, 8, 1, 0, None, 0.0, None, True, {0: 1.0})  # (..., shuffle, class_weight, ...)
    assert len(model.predict(x, 8, 0, 1)) == 8  # (x, batch_size, verbose, steps, callbacks): one batch of 8
    with pytest.raises(NotImplementedError, match="callbacks"):
        model.predict(x, 8, 0, None, [npae.callbacks.History()])
    with pytest.raises(TypeError):
        model.fit(x, x, unknown=1)  # a keyword Keras does not have either: Python's own error


def test_a_batch_method_refuses_an_empty_batch():
    # (one sample is a batch; none is not: BatchNormalization would average nothing)
    model = npae.Sequential([npae.Input((4,)), BatchNormalization(), Dense(4)])
    model.compile("adam", "mse")
    empty = np.zeros((0, 4), np.float32)
    for method in (model.train_on_batch, model.test_on_batch):
        with pytest.raises(ValueError, match="empty batch"):
            method(empty, empty)
    assert np.isfinite(model.get_weights()[2]).all()  # the moving mean is untouched


def test_device_takes_kerass_cpu_names_and_refuses_a_gpu():
    from npae.device import device

    model, x = small(), data(8)
    want = model.predict(x, verbose=0)
    for name in ("cpu", "cpu:0", "CPU:0", "/CPU:0", "/cpu:0", "/device:CPU:0", "/Device:cpu:0"):
        with device(name) as where:
            np.testing.assert_array_equal(model.predict(x, verbose=0), want)
        assert where == "cpu:0"
    for name in ("gpu:0", "GPU", "/device:GPU:0", "cuda", "tpu:0", "", "cpu0"):
        with pytest.raises(ValueError, match=f"npae runs on the CPU only .* on {name!r}"):
            device(name)
    with pytest.raises(ValueError, match="one CPU device, cpu:0"):
        device("cpu:1")
    with pytest.raises(ValueError, match="expected a device name such as 'cpu:0', got 0"):
        device(0)
