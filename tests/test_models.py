"""Models: the functional API with shared layers, fit/evaluate/predict, summary, weights, save/load,
determinism, and whole-model gradient checks of the six autoencoders."""

import numpy as np
import pytest

import npae
from npae import autoencoders, regularizers
from npae.gradcheck import check_model
from npae.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from npae.models import Model, Sequential, load_model
from npae.saving import ModelFileError

KERAS_PARAM_COUNTS = {  # what Keras's summary() reports for the same architectures
    "vanilla": 101_200, "multilayer": 218_192, "deep": 222_384,
    "convolutional": 4_385, "sparse": 101_200, "denoising": 28_353,
}


def data_for(model, n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 0.95, (n, *model.input_shape[1:])).astype(np.float32)


def test_tutorial_functional_program_shares_weights():
    input_img = Input(shape=(784,))
    encoded = Dense(32, activation="relu")(input_img)
    decoded = Dense(784, activation="sigmoid")(encoded)
    autoencoder = Model(input_img, decoded)
    encoder = Model(input_img, encoded)
    encoded_input = Input(shape=(32,))
    decoder = Model(encoded_input, autoencoder.layers[-1](encoded_input))
    autoencoder.compile(optimizer="adadelta", loss="binary_crossentropy")
    x = data_for(autoencoder, 64)
    autoencoder.fit(x, x, epochs=1, batch_size=16, verbose=0)
    np.testing.assert_allclose(decoder.predict(encoder.predict(x)), autoencoder.predict(x), rtol=1e-5, atol=1e-6)
    assert decoder.layers[-1] is autoencoder.layers[-1]


def test_old_keras_spelling_and_sequential():
    x = Input(shape=(4,))
    m = Model(input=x, output=Dense(2)(x))
    assert m.output_shape == (None, 2)
    s = Sequential([Input(shape=(6, 6, 1)), Conv2D(2, 3), MaxPooling2D(), Flatten(), Dense(3)])
    assert s.output_shape == (None, 3) and len(s.layers) == 4
    s2 = Sequential([Dense(5, input_shape=(3,)), Dense(1)])
    assert s2.count_params() == 3 * 5 + 5 + 5 + 1


def test_graphs_that_are_not_models_are_errors_at_construction():
    a, b = Input(shape=(3,), name="a"), Input(shape=(3,), name="b")
    with pytest.raises(ValueError, match="the input 'b' feeds nothing"):
        Model([a, b], Dense(1)(a))
    with pytest.raises(ValueError, match="not all computed from the given inputs: .* needs the Input 'b'"):
        Model(a, Dense(1)(b))


@pytest.mark.parametrize("name", sorted(KERAS_PARAM_COUNTS))
def test_param_counts_equal_keras(name, capsys):
    ae, enc, dec = autoencoders.BUILDERS[name](seed=0)
    assert ae.count_params() == KERAS_PARAM_COUNTS[name]
    assert enc.count_params() + dec.count_params() == ae.count_params()
    ae.summary()
    assert f"Total params: {KERAS_PARAM_COUNTS[name]:,}" in capsys.readouterr().out


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("name", ["vanilla", "sparse", "multilayer", "deep", "convolutional", "denoising"])
def test_whole_model_gradcheck(name, jit):
    ae, _, _ = autoencoders.BUILDERS[name](seed=1)
    x = data_for(ae, 2, seed=1)
    y = x if name != "denoising" else np.clip(x + 0.1, 0, 1)
    report = check_model(ae, x, y, mode="projection", jit_compile=jit)
    assert report.passed, report.table()
    assert sum(c.checked for c in report.checks) >= len(report.checks)


@pytest.mark.parametrize("jit", [True, False])
def test_narrow_conv_autoencoder_full_gradcheck(jit):
    # every element of every conv kernel and bias, through pooling, upsampling and the valid conv
    ae, _, _ = autoencoders.convolutional(filters=(2, 2, 2), seed=4)
    report = check_model(ae, data_for(ae, 2), data_for(ae, 2, seed=9), mode="full", jit_compile=jit)
    assert report.passed, report.table()
    assert sum(c.checked for c in report.checks) > 200


@pytest.mark.parametrize("jit", [True, False])
def test_model_gradcheck_covers_fused_sigmoid_bce_and_l1(jit):
    ae, _, _ = autoencoders.sparse(encoding_dim=6, l1=0.05, input_dim=10, loss="binary_crossentropy", seed=3)
    assert ae.fuses_sigmoid_into_loss
    report = check_model(ae, data_for(ae, 4), data_for(ae, 4, seed=5), jit_compile=jit)
    assert report.passed, report.table()


@pytest.mark.parametrize("jit", [True, False])
def test_a_layer_applied_twice_trains_with_its_gradients_summed(jit):
    # Keras: one layer called twice in a model has its weights once and the sum of both uses'
    # gradients; the whole-model gradient check proves the sum
    npae.set_random_seed(0)
    inp = Input(shape=(4,))
    d = Dense(4, activation="tanh")
    model = Model(inp, Dense(3)(d(d(inp))))
    model.compile("sgd", "mse", jit_compile=jit)
    assert len(model.layers) == 3 and len(model.get_weights()) == 4
    x, y = np.random.default_rng(0).random((6, 4)), np.random.default_rng(1).random((6, 3))
    report = check_model(model, x, y, mode="full", jit_compile=jit)
    assert report.passed, report.table()
    before = model.get_weights()
    h = model.fit(x.astype(np.float32), y.astype(np.float32), epochs=3, batch_size=3, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert not np.array_equal(before[0], model.get_weights()[0])


def test_fit_history_includes_the_l1_penalty():
    ae, enc, _ = autoencoders.sparse(encoding_dim=8, l1=0.5, input_dim=12, seed=0)
    x = data_for(ae, 32)
    h = ae.fit(x, x, epochs=2, batch_size=8, validation_data=(x, x), verbose=0, seed=0)
    assert set(h.history) == {"loss", "val_loss"} and len(h.history["loss"]) == 2
    codes = enc.predict(x)
    plain = npae.losses.get("mse")(x, ae.predict(x))  # Keras's order: (y_true, y_pred)
    assert np.isclose(ae.evaluate(x, x), plain + 0.5 * np.abs(codes).sum() / len(x), rtol=1e-4)


def test_predict_in_batches_matches_one_batch():
    ae, _, _ = autoencoders.convolutional(seed=0)
    x = data_for(ae, 37)
    np.testing.assert_allclose(ae.predict(x, batch_size=8), ae.forward(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("name", ["deep", "convolutional"])
def test_results_handed_out_are_never_overwritten_later(name, jit):
    # on the fast path steps write into kept buffers; what a caller holds must not change
    ae = autoencoders.BUILDERS[name](seed=0)[0]
    ae.compile(optimizer=ae.optimizer, loss=ae.loss, jit_compile=jit)
    shape = (6, 28, 28, 1) if name == "convolutional" else (6, 784)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    first = ae.predict(x[:3])
    first_copy = first.copy()
    pred = ae.predict(x, batch_size=2)
    ae.compute_gradients(x, x)
    grads = {k: g.copy() for k, g in ae.gradients().items()}
    ae.evaluate(x, x, batch_size=4)
    ae.predict(x[3:])
    ae(x[2:5])
    np.testing.assert_array_equal(first, first_copy)
    np.testing.assert_allclose(pred[:3], first_copy, rtol=1e-6, atol=1e-7)
    for k, g in ae.gradients().items():  # evaluate and predict leave the gradients alone
        np.testing.assert_array_equal(g, grads[k])


@pytest.mark.parametrize("last", ["dense", "flatten"])
def test_predict_fills_its_result_whatever_the_last_layer(last):
    # the last step writes into predict's result, unless it returns a view of its input
    inp = Input(shape=(4, 4, 1))
    h = Conv2D(2, 3, padding="same", activation="relu")(inp)
    h = Flatten()(h)
    model = Model(inp, Dense(5, activation="sigmoid")(h) if last == "dense" else h)
    x = np.random.default_rng(5).random((7, 4, 4, 1), dtype=np.float32)
    pred = model.predict(x, batch_size=3)
    np.testing.assert_allclose(pred, model.forward(x), rtol=1e-6, atol=1e-7)


def test_same_seed_gives_bit_identical_training():
    def run():
        ae, _, _ = autoencoders.convolutional(filters=(4, 2, 2), seed=11)
        x = data_for(ae, 40)
        h = ae.fit(x, x, epochs=2, batch_size=16, verbose=0, seed=5)
        return ae.get_weights(), h.history["loss"]

    (w1, l1), (w2, l2) = run(), run()
    assert l1 == l2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


def test_set_random_seed_reproduces_a_functional_model():
    def build():
        npae.set_random_seed(123)
        x = Input(shape=(6,))
        return Model(x, Dense(3, activation="sigmoid")(Dense(4, activation="relu")(x)))

    a, b = build(), build()
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)
    npae.set_random_seed(124)
    x = Input(shape=(6,))
    c = Model(x, Dense(3)(Dense(4)(x)))
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_get_set_weights_in_keras_order():
    ae, _, _ = autoencoders.vanilla(seed=0)
    shapes = [w.shape for w in ae.get_weights()]
    assert shapes == [(784, 64), (64,), (64, 784), (784,)]
    new = [np.full(s, 0.01, np.float32) for s in shapes]
    ae.set_weights(new)
    np.testing.assert_array_equal(ae.layers[1].params["kernel"], new[0])
    with pytest.raises(ValueError, match=r"expected shape \(784, 64\), got \(64, 784\)"):
        ae.set_weights([new[2], new[1], new[2], new[3]])


def test_save_load_round_trip_and_resume(tmp_path):
    ae, _, _ = autoencoders.convolutional(filters=(4, 2, 2), seed=2)
    x = data_for(ae, 24)
    ae.fit(x, x, epochs=1, batch_size=8, verbose=0, seed=0)
    path = tmp_path / "model.npz"
    ae.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temp file left behind
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), ae.predict(x))
    assert loaded.optimizer.iterations == ae.optimizer.iterations
    ae.train_on_batch(x[:8], x[:8])
    loaded.train_on_batch(x[:8], x[:8])
    for a, b in zip(ae.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_load_weights_resumes_into_a_fresh_model_and_checks_the_architecture(tmp_path):
    ae, _, _ = autoencoders.vanilla(encoding_dim=4, input_dim=6, seed=0)
    x = np.random.default_rng(0).random((32, 6)).astype(np.float32)
    ae.fit(x, x, epochs=2, batch_size=8, verbose=0, seed=3)
    ae.save(tmp_path / "m.npz")
    ae.fit(x, x, epochs=4, batch_size=8, verbose=0, seed=3, initial_epoch=2)
    fresh, _, _ = autoencoders.vanilla(encoding_dim=4, input_dim=6, seed=1)  # other weights, other layer names
    fresh.load_weights(tmp_path / "m.npz")
    assert fresh.optimizer.iterations == 8
    fresh.fit(x, x, epochs=4, batch_size=8, verbose=0, seed=3, initial_epoch=2)
    for a, b in zip(ae.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    other, _, _ = autoencoders.vanilla(encoding_dim=5, input_dim=6, seed=0)
    with pytest.raises(ModelFileError, match="different architecture: expected layers"):
        other.load_weights(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="initial_epoch"):
        ae.fit(x, x, epochs=1, verbose=0, initial_epoch=-1)


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        ae, _, _ = autoencoders.vanilla(encoding_dim=4, input_dim=6, seed=0)
        ae.save(tmp_path / "m.npz")
        assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(mask)


def test_sequential_save_load(tmp_path):
    s = Sequential([Input(shape=(5,)), Dense(3, activation="relu", activity_regularizer=regularizers.l1(0.01)),
                    Dense(5, activation="sigmoid")])
    s.compile("sgd", "mse")
    s.save(tmp_path / "s.npz")
    t = load_model(tmp_path / "s.npz")
    assert isinstance(t, Sequential) and t.layers[0].activity_regularizer.l1 == 0.01
    x = data_for(s, 3)
    np.testing.assert_array_equal(t.predict(x), s.predict(x))


def test_bad_model_files_are_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match="no model file"):
        load_model(tmp_path / "missing.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ModelFileError, match="not an npae model file"):
        load_model(tmp_path / "garbage.npz")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(ModelFileError, match="not an npae model"):
        load_model(tmp_path / "foreign.npz")
    ae, _, _ = autoencoders.vanilla(encoding_dim=4, input_dim=6, seed=0)
    ae.save(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "truncated.npz")
    with np.load(tmp_path / "good.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["weight_0"] = np.zeros((5, 4), np.float32)  # wrong shape for a (6, 4) kernel
    np.savez(tmp_path / "mismatch.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"'weight_0' has shape \(5, 4\), expected \(6, 4\)"):
        load_model(tmp_path / "mismatch.npz")


def test_object_arrays_are_never_unpickled(tmp_path):
    ae, _, _ = autoencoders.vanilla(encoding_dim=4, input_dim=6, seed=0)
    ae.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["weight_0"] = np.array([object()], dtype=object)
    np.savez(tmp_path / "pickled.npz", **arrays)
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "pickled.npz")


def test_float64_model_for_exact_checks():
    ae, _, _ = autoencoders.vanilla(encoding_dim=4, input_dim=6, seed=0)
    ae.astype(np.float64)
    assert ae.dtype == np.float64 and ae.predict(data_for(ae, 2)).dtype == np.float64
    assert ae.compute_gradients(data_for(ae, 2), data_for(ae, 2)) > 0
    assert all(g.dtype == np.float64 for g in ae.gradients().values())


def test_float64_sequential_keeps_its_inputs_in_float64():
    # a Sequential's layers leave out its InputLayer, which must be cast too: it casts the data
    model = Sequential([Dense(3, activation="sigmoid", input_shape=(4,))]).astype(np.float64)
    x = np.random.default_rng(0).random((2, 4))
    w, b = model.get_weights()
    want = 1 / (1 + np.exp(-(x @ w + b)))
    np.testing.assert_allclose(model.forward(x), want, rtol=1e-14)


def test_fit_rejects_bad_data_and_arguments():
    ae, _, _ = autoencoders.vanilla(encoding_dim=4, input_dim=6, seed=0)
    x = data_for(ae, 8)
    with pytest.raises(ValueError, match=r"expected x of shape \(n, 6\), got \(8, 2, 3\)"):
        ae.fit(x.reshape(8, 2, 3), x, verbose=0)
    with pytest.raises(ValueError, match=r"expected y of shape \(8, 6\)"):
        ae.fit(x, x[:4], verbose=0)
    with pytest.raises(ValueError, match="epochs must be a non-negative int, got -1"):
        ae.fit(x, x, epochs=-1, verbose=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        ae.fit(x, x, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        ae.fit(x, x, seed=-1, verbose=0)
    with pytest.raises(ValueError, match="fit got no training samples"):
        ae.fit(x[:0], x[:0], verbose=0)
    with pytest.raises(ValueError, match="evaluate got no samples"):
        ae.evaluate(x[:0], x[:0])
    with pytest.raises(ValueError, match="validation_data holds no samples"):
        ae.fit(x, x, validation_data=(x[:0], x[:0]), verbose=0)
    with pytest.raises(ValueError, match=r"validation_data must be a tuple \(x_val, y_val\), got a tuple of 1"):
        ae.fit(x, x, validation_data=(x,), verbose=0)
    with pytest.raises(NotImplementedError, match="sample weights"):
        ae.fit(x, x, validation_data=(x, x, np.ones(8)), verbose=0)


def test_fit_before_compile_is_a_clear_error():
    x = Input(shape=(3,))
    m = Model(x, Dense(3)(x))
    with pytest.raises(RuntimeError, match="call compile"):
        m.fit(np.zeros((2, 3)), np.zeros((2, 3)), verbose=0)


@pytest.mark.parametrize("name", sorted(KERAS_PARAM_COUNTS))
def test_each_autoencoder_learns_on_real_mnist(name, mnist_test_images):  # on the fast path
    conv = name in ("convolutional", "denoising")
    n_train, n_val, epochs = (2000, 500, 2) if conv else (8000, 2000, 5)
    x = mnist_test_images if not conv else mnist_test_images.reshape(-1, 28, 28, 1)
    x_train, x_val = x[:n_train], x[8000:8000 + n_val]
    ae, _, _ = autoencoders.BUILDERS[name](seed=0)
    y_train = x_train
    if name == "denoising":
        x_train = npae.datasets.add_noise(x_train, seed=0)
    before = ae.evaluate(x_val, x_val, batch_size=500)
    h = ae.fit(x_train, y_train, epochs=epochs, batch_size=128, validation_data=(x_val, x_val), verbose=0, seed=0)
    after = h.history["val_loss"][-1]
    assert after < 0.75 * before, f"{name}: val loss {before:.4f} -> {after:.4f}"
