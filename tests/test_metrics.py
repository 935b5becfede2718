"""compile(metrics=[...]): Keras's names and maths, logged by fit (and val_), returned by
evaluate / train_on_batch / test_on_batch (list or dict), saved with the model; and the
progress that evaluate and predict print for verbose."""

import numpy as np
import pytest

import npae
from npae import metrics
from npae.layers import Conv2D, Dense, Flatten, Reshape


def dense_model(loss="mse", seed=0):
    npae.set_random_seed(seed)
    model = npae.Sequential([npae.Input((20,)), Dense(8, activation="relu"), Dense(20, activation="sigmoid")])
    model.compile(optimizer="adam", loss=loss)
    return model


def data(n=64, seed=1):
    return np.random.default_rng(seed).random((n, 20)).astype(np.float32)


# ----------------------------------------------------------------------------- the functions

def test_metric_functions_are_kerass_maths():
    y = np.array([[0.0, 1.0, 0.5, 1.0], [1.0, 0.0, 0.0, 0.25]])
    p = np.array([[0.2, 0.7, 0.5, 1.0], [0.9, 0.6, 0.4, 0.5]])
    np.testing.assert_allclose(metrics.mse(y, p), [(0.04 + 0.09 + 0 + 0) / 4, (0.01 + 0.36 + 0.16 + 0.0625) / 4])
    np.testing.assert_allclose(metrics.mae(y, p), [(0.2 + 0.3) / 4, (0.1 + 0.6 + 0.4 + 0.25) / 4])
    # y_pred > 0.5 gives [0, 1, 0, 1] and [1, 1, 0, 0]; 0.5 and 0.25 never equal 0 or 1
    np.testing.assert_allclose(metrics.binary_accuracy(y, p), [3 / 4, 2 / 4])
    np.testing.assert_allclose(metrics.categorical_accuracy(y, p), [0.0, 1.0])  # argmax 1 vs 3; 0 vs 0
    p_edge = np.array([[0.0, 1.0]])
    bce = metrics.binary_crossentropy(np.array([[1.0, 0.0]]), p_edge)
    np.testing.assert_allclose(bce, [-np.log(1e-7)], rtol=1e-6)  # clipped, finite
    # categorical cross-entropy: each row normalised by its sum and clipped, then -sum y log p over
    # the classes (Keras's docstring example: [0.0513, 2.303])
    t2, p2 = np.array([[0, 1, 0], [0, 0, 1]]), np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    np.testing.assert_allclose(metrics.categorical_crossentropy(t2, p2), [-np.log(0.95), -np.log(0.1)], rtol=1e-12)
    np.testing.assert_allclose(metrics.categorical_crossentropy(t2, 2 * p2), [-np.log(0.95), -np.log(0.1)])
    assert metrics.categorical_crossentropy(np.eye(3)[[[0, 1]]], np.full((1, 2, 3), 1 / 3)).shape == (1, 2)


def test_metric_names_resolve_as_in_keras():
    assert metrics.get("mae", (None, 784)).fn is metrics.mean_absolute_error
    assert metrics.get("MSE", (None, 784)).name == "MSE"  # logged under the name given
    assert metrics.get("accuracy", (None, 28, 28, 1)).fn is metrics.binary_accuracy  # last axis of size 1
    assert metrics.get("acc", (None, 784)).fn is metrics.categorical_accuracy
    assert metrics.get("categorical_crossentropy", (None, 10)).fn is metrics.categorical_crossentropy
    with pytest.raises(ValueError, match="unknown metric 'crossentropy'"):  # a Keras loss alias, not a metric
        metrics.get("crossentropy", (None, 1))
    with pytest.raises(ValueError, match="unknown metric 'f1'.*mean_squared_error"):
        metrics.get("f1", (None, 784))

    def peak(y_true, y_pred):
        return np.max(np.abs(y_true - y_pred), axis=-1)

    assert metrics.get(peak, (None, 784)) == metrics.Metric("peak", peak, None)


def test_compile_refuses_metrics_it_cannot_log():
    model = dense_model()
    with pytest.raises(TypeError, match="must be a list"):
        model.compile(optimizer="adam", loss="mse", metrics="mae")
    with pytest.raises(ValueError, match="metrics names 'out', which is not an output of the model"):
        model.compile(optimizer="adam", loss="mse", metrics={"out": ["mae"]})
    with pytest.raises(ValueError, match=r"logged as \['mae'\]"):
        model.compile(optimizer="adam", loss="mse", metrics=["mae", "mae"])
    with pytest.raises(ValueError, match="unknown metric"):
        model.compile(optimizer="adam", loss="mse", metrics=["precision"])


# ----------------------------------------------------------------------------- fit and evaluate

@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy"])
def test_fit_logs_metrics_of_the_same_forward_pass_and_validation(jit, loss):
    x, xv = data(64), data(32, seed=2)
    model = dense_model(loss)
    model.compile(optimizer="adam", loss=loss, metrics=["mae", "mse"], jit_compile=jit)
    before = model.predict(x, verbose=0)  # no dropout: the training-mode output, before the update
    history = model.fit(x, x, epochs=1, batch_size=64, shuffle=False, verbose=0, validation_data=(xv, xv))
    assert list(history.history) == ["loss", "mae", "mse", "val_loss", "val_mae", "val_mse"]
    # the metrics see the sigmoid's output (not the logits the fused cross-entropy takes)
    assert history.history["mae"][0] == pytest.approx(np.abs(before - x).mean(), rel=1e-5)
    assert history.history["mse"][0] == pytest.approx(np.square(before - x).mean(), rel=1e-5)
    after = model.predict(xv, verbose=0)
    assert history.history["val_mae"][0] == pytest.approx(np.abs(after - xv).mean(), rel=1e-5)
    if loss == "mse":
        assert history.history["loss"][0] == pytest.approx(history.history["mse"][0], rel=1e-5)


def test_epoch_metrics_weight_each_batch_by_its_size():
    x = data(50)
    model = dense_model()
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])  # learning_rate 0.01: the outputs barely move
    model.optimizer.learning_rate = 0.0  # and now not at all: every batch sees the same weights
    before = model.predict(x, verbose=0)
    history = model.fit(x, x, epochs=1, batch_size=16, shuffle=False, verbose=0)  # batches of 16, 16, 16, 2
    assert history.history["mae"][0] == pytest.approx(np.abs(before - x).mean(), rel=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_evaluate_returns_keras_shapes(jit):
    x = data(48)
    model = dense_model()
    model.compile(optimizer="adam", loss="mse", jit_compile=jit)
    plain = model.evaluate(x, x, batch_size=16, verbose=0)
    assert isinstance(plain, float)
    assert model.evaluate(x, x, batch_size=16, verbose=0, return_dict=True) == {"loss": plain}
    model.compile(optimizer="adam", loss="mse", metrics=["mae", "binary_accuracy"], jit_compile=jit)
    out = model.predict(x, verbose=0)
    listed = model.evaluate(x, x, batch_size=16, verbose=0)
    assert model.metrics_names == ["loss", "mae", "binary_accuracy"]
    assert listed[0] == pytest.approx(plain, rel=1e-6)
    assert listed[1] == pytest.approx(np.abs(out - x).mean(), rel=1e-5)
    assert listed[2] == pytest.approx(np.mean(x == (out > 0.5)))
    as_dict = model.evaluate(x, x, batch_size=16, verbose=0, return_dict=True)
    assert list(as_dict) == model.metrics_names and list(as_dict.values()) == pytest.approx(listed)


def test_metrics_on_a_convolutional_model_reduce_over_every_pixel():
    npae.set_random_seed(3)
    model = npae.Sequential([npae.Input((6, 6, 1)), Conv2D(2, 3, padding="same", activation="relu"),
                             Conv2D(1, 3, padding="same", activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy", "mae"])
    x = (np.random.default_rng(0).random((10, 6, 6, 1)) > 0.5).astype(np.float32)  # 0 / 1 targets
    out = model.predict(x, verbose=0)
    loss, accuracy, mae = model.evaluate(x, x, verbose=0)
    assert accuracy == pytest.approx(np.mean(x == (out > 0.5)))  # binary: the last axis has size 1
    assert mae == pytest.approx(np.abs(out - x).mean(), rel=1e-5)


def test_train_and_test_on_batch_return_metrics():
    x = data(32)
    model = dense_model()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    out = model.predict(x, verbose=0)
    loss, mae = model.train_on_batch(x, x)
    assert mae == pytest.approx(np.abs(out - x).mean(), rel=1e-5) and loss == pytest.approx(np.square(out - x).mean(),
                                                                                             rel=1e-5)
    after = model.predict(x, verbose=0)
    logs = model.test_on_batch(x, x, return_dict=True)
    assert logs["mae"] == pytest.approx(np.abs(after - x).mean(), rel=1e-5)
    assert set(model.train_on_batch(x, x, return_dict=True)) == {"loss", "mae"}


def test_a_custom_metric_function_is_logged_under_its_name():
    def peak_error(y_true, y_pred):
        return np.max(np.abs(y_true - y_pred), axis=-1)

    x = data(32)
    model = dense_model()
    model.compile(optimizer="adam", loss="mse", metrics=[peak_error])
    out = model.predict(x, verbose=0)
    logs = model.evaluate(x, x, verbose=0, return_dict=True)
    assert logs["peak_error"] == pytest.approx(np.max(np.abs(x - out), axis=-1).mean(), rel=1e-5)

    def wrong(y_true, y_pred):
        return np.ones(3)

    model.compile(optimizer="adam", loss="mse", metrics=[wrong])
    with pytest.raises(ValueError, match="metric 'wrong' returned values of shape \\(3,\\) for a batch of 32"):
        model.evaluate(x, x, batch_size=32, verbose=0)


def test_metrics_are_saved_with_the_model(tmp_path):
    model = dense_model()
    model.compile(optimizer="adam", loss="mse", metrics=["mae", "binary_accuracy"])
    model.save(tmp_path / "m.npz")
    loaded = npae.load_model(tmp_path / "m.npz")
    assert loaded.metrics_names == ["loss", "mae", "binary_accuracy"]

    def peak(y_true, y_pred):
        return np.max(np.abs(y_true - y_pred), axis=-1)

    model.compile(optimizer="adam", loss="mse", metrics=["mae", peak])
    with pytest.warns(UserWarning, match=r"metric functions \['peak'\] are not saved"):
        model.save(tmp_path / "m2.npz")
    assert npae.load_model(tmp_path / "m2.npz").metrics_names == ["loss", "mae"]


# ----------------------------------------------------------------------------- verbose

def test_evaluate_and_predict_print_progress_as_keras(capsys):
    x = data(40)
    model = dense_model()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.evaluate(x, x, batch_size=16)  # verbose="auto": Keras's default, a bar (one line off a terminal)
    line = capsys.readouterr().out
    assert line.startswith("3/3 - ") and "ms/step - loss: " in line and " - mae: " in line
    assert line.count("\n") == 1
    model.predict(x, batch_size=16, verbose=2)
    assert capsys.readouterr().out.startswith("3/3 - ")
    model.evaluate(x, x, verbose=0)
    model.predict(x, verbose=0)
    model(x)  # calling the model is silent, as in Keras
    assert capsys.readouterr().out == ""
    for bad in (3, "yes", 1.5, None):
        with pytest.raises(ValueError, match="verbose must be 'auto', 0, 1 or 2"):
            model.predict(x, verbose=bad)
    model.predict(x, verbose=False)  # Keras reads True and False as 1 and 0
    assert capsys.readouterr().out == ""
    model.evaluate(x, x, batch_size=16, verbose=True)
    assert capsys.readouterr().out.startswith("3/3 - ")
    # no samples: an empty prediction and no progress bar (not a division by zero)
    assert model.predict(x[:0], verbose=1).shape == (0, 20)
    assert capsys.readouterr().out == ""


def test_a_reshaping_model_logs_metrics_on_its_output_shape():
    npae.set_random_seed(0)
    model = npae.Sequential([npae.Input((4, 5)), Flatten(), Dense(20, activation="sigmoid"), Reshape((4, 5))])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    x = np.random.default_rng(0).random((8, 4, 5)).astype(np.float32)
    out = model.predict(x, verbose=0)
    assert model.evaluate(x, x, verbose=0)[1] == pytest.approx(np.abs(out - x).mean(), rel=1e-5)


def test_metrics_compile_before_the_model_is_built_and_resolve_at_the_first_batch():
    # Keras compiles a Sequential without an input shape; "accuracy" is chosen when the output is known
    npae.set_random_seed(0)
    model = npae.Sequential([Dense(8, activation="relu"), Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    assert model.metrics_names == ["loss", "accuracy"]
    x = data(32)
    y = (x[:, :1] > 0.5).astype(np.float32)
    logs = model.train_on_batch(x, y, return_dict=True)
    out = model.predict(x, verbose=0)
    assert set(logs) == {"loss", "accuracy"}
    after = model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"]
    assert after == pytest.approx(np.mean((out > 0.5) == y))  # binary accuracy: output of size 1


def test_a_metric_that_returns_one_number_counts_once_per_batch_as_kerass_mean():
    def worst(y_true, y_pred):
        return np.max(np.abs(y_true - y_pred))  # one number for the batch

    x = data(50)
    model = dense_model()
    model.compile(optimizer="sgd", loss="mse", metrics=[worst])
    model.optimizer.learning_rate = 0.0
    err = np.abs(model.predict(x, verbose=0) - x)
    per_batch = [err[s:s + 16].max() for s in range(0, 50, 16)]  # batches of 16, 16, 16, 2
    history = model.fit(x, x, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert history.history["worst"][0] == pytest.approx(np.mean(per_batch), rel=1e-5)
