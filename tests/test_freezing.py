"""layer.trainable = False: a frozen layer takes no update, the backward pass stops below the
lowest trainable layer (a frozen encoder runs forward only), the gradient still flows through a
frozen layer to the trainable ones under it, and both paths agree."""

import numpy as np
import pytest

import npae
from npae.layers import Conv2D, Dense, MaxPooling2D, UpSampling2D


def dense_autoencoder(seed=0):
    npae.set_random_seed(seed)
    inp = npae.Input((30,))
    code = Dense(8, activation="relu", name="enc1")(Dense(16, activation="relu", name="enc0")(inp))
    out = Dense(30, activation="sigmoid", name="dec")(Dense(16, activation="relu", name="dec0")(code))
    return npae.Model(inp, out)


def conv_model(seed=0):
    npae.set_random_seed(seed)
    return npae.Sequential([
        npae.Input((12, 12, 1)),
        Conv2D(4, 3, padding="same", activation="relu", name="c0"),
        MaxPooling2D(2, padding="same"),
        Conv2D(6, 5, strides=2, padding="same", activation="relu", name="c1"),  # strided 5x5: im2col
        UpSampling2D(2),
        Conv2D(6, 3, padding="same", activation="relu", name="c2"),
        UpSampling2D(2),
        Conv2D(1, 3, padding="same", activation="sigmoid", name="c3"),
    ])


def weights_of(model):
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("jit", [False, True])
def test_a_frozen_encoder_keeps_its_weights_and_the_decoder_learns(jit):
    x = np.random.default_rng(0).random((64, 30)).astype(np.float32)
    model = dense_autoencoder()
    for name in ("enc0", "enc1"):
        model.get_layer(name).trainable = False
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=jit)
    before = weights_of(model)
    model.fit(x, x, epochs=2, batch_size=16, verbose=0)
    after = weights_of(model)
    assert same(before["enc0"], after["enc0"]) and same(before["enc1"], after["enc1"])
    assert not same(before["dec"], after["dec"]) and not same(before["dec0"], after["dec0"])
    assert set(model.gradients()) == {k for k in model.parameters() if k.startswith(("dec0", "dec"))}
    assert [len(model.get_layer(n).trainable_weights) for n in ("enc0", "enc1", "dec0", "dec")] == [0, 0, 2, 2]
    if jit:  # the backward pass starts and ends in the decoder: the encoder runs forward only
        plan = model.path.plan("train")
        assert plan.steps[plan.first_backward].layer.name == "dec0"
        assert not plan.steps[plan.first_backward].needs_dx


@pytest.mark.parametrize("jit", [False, True])
def test_the_trainable_layers_gradients_do_not_depend_on_what_is_frozen(jit):
    x = np.random.default_rng(1).random((10, 12, 12, 1))
    full = conv_model().astype("float64")
    full.compile(optimizer="sgd", loss="binary_crossentropy", jit_compile=jit)
    full.compute_gradients(x, x)
    want = {k: v.copy() for k, v in full.gradients().items()}
    for frozen in (["c1"], ["c0", "c2"], ["c2", "c3"], ["c0"]):
        model = conv_model().astype("float64")
        for name in frozen:
            model.get_layer(name).trainable = False
        model.compile(optimizer="sgd", loss="binary_crossentropy", jit_compile=jit)
        model.compute_gradients(x, x)
        got = model.gradients()
        assert set(got) == {k for k in want if k.split("/")[0] not in frozen}, frozen
        for key, grad in got.items():  # the gradient flows through a frozen layer unchanged
            np.testing.assert_allclose(grad, want[key], rtol=1e-10, atol=1e-12, err_msg=f"{frozen}: {key}")


def test_both_paths_train_a_model_with_a_frozen_middle_layer_alike():
    x = np.random.default_rng(2).random((32, 12, 12, 1)).astype(np.float32)
    results = []
    for jit in (False, True):
        model = conv_model(seed=4)
        model.get_layer("c1").trainable = False
        model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=jit)
        frozen_before = [w.copy() for w in model.get_layer("c1").get_weights()]
        history = model.fit(x, x, epochs=2, batch_size=8, shuffle=False, verbose=0)
        assert same(frozen_before, model.get_layer("c1").get_weights())
        results.append((history.history["loss"], model.get_weights()))
    (loss_ref, w_ref), (loss_fast, w_fast) = results
    np.testing.assert_allclose(loss_fast, loss_ref, rtol=1e-5)
    for a, b in zip(w_fast, w_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_freezing_after_compile_takes_effect_at_the_next_batch(jit):
    x = np.random.default_rng(3).random((32, 30)).astype(np.float32)
    model = dense_autoencoder()
    model.compile(optimizer="adam", loss="mse", jit_compile=jit)
    model.fit(x, x, epochs=1, batch_size=16, verbose=0)
    model.get_layer("enc0").trainable = False
    before = weights_of(model)
    model.fit(x, x, epochs=1, batch_size=16, verbose=0)
    assert same(before["enc0"], weights_of(model)["enc0"])
    assert not same(before["enc1"], weights_of(model)["enc1"])
    model.get_layer("enc0").trainable = True  # and back
    model.fit(x, x, epochs=1, batch_size=16, verbose=0)
    assert not same(before["enc0"], weights_of(model)["enc0"])


def test_a_fully_frozen_model_trains_nothing_but_reports_its_loss():
    x = np.random.default_rng(4).random((16, 30)).astype(np.float32)
    model = dense_autoencoder()
    for layer in model.layers[1:]:
        layer.trainable = False
    model.compile(optimizer="adam", loss="mse")
    before = model.get_weights()
    history = model.fit(x, x, epochs=2, batch_size=8, verbose=0)
    assert same(before, model.get_weights())
    assert history.history["loss"][0] == pytest.approx(history.history["loss"][1], rel=1e-6)
    assert history.history["loss"][0] == pytest.approx(model.evaluate(x, x, verbose=0), rel=1e-5)


def test_trainable_survives_saving(tmp_path):
    model = dense_autoencoder()
    model.get_layer("enc1").trainable = False
    model.compile(optimizer="adam", loss="mse")
    model.save(tmp_path / "m.npz")
    loaded = npae.load_model(tmp_path / "m.npz")
    assert [layer.trainable for layer in loaded.layers[1:]] == [True, False, True, True]
    assert len(loaded.trainable_weights) == 6 and len(loaded.non_trainable_weights) == 2


def test_freezing_a_model_freezes_its_layers_in_every_model_that_shares_them():
    from npae import autoencoders

    x = np.random.default_rng(5).random((16, 28, 28, 1)).astype(np.float32)
    ae, encoder, _ = autoencoders.transposed(seed=0)
    encoder.trainable = False  # Keras's idiom: the autoencoder shares these layer objects
    assert not encoder.trainable and ae.trainable
    assert all(not layer.trainable for layer in encoder.layers[1:])
    before = [w.copy() for w in encoder.get_weights()]
    ae.fit(x, x, epochs=1, batch_size=8, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, encoder.get_weights()))  # BN statistics included
    with pytest.raises(TypeError, match="trainable must be True or False"):
        encoder.trainable = "no"


@pytest.mark.parametrize("jit", [False, True])
def test_a_callback_that_freezes_and_unfreezes_during_fit_takes_effect_at_the_next_batch(jit):
    # fine-tuning: the encoder frozen for the first epoch, unfrozen by a callback for the second,
    # while the decoder's last layer is frozen for the second
    x = np.random.default_rng(5).random((32, 30)).astype(np.float32)
    model = dense_autoencoder()
    model.get_layer("enc0").trainable = False
    model.compile(optimizer="adam", loss="mse", jit_compile=jit)
    seen = {}

    class Switch(npae.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen[epoch] = weights_of(model)
            if epoch == 1:
                model.get_layer("enc0").trainable = True
                model.get_layer("dec").trainable = False

    model.fit(x, x, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[Switch()])
    end = weights_of(model)
    assert same(seen[0]["enc0"], seen[1]["enc0"])  # frozen in epoch 0
    assert not same(seen[1]["enc0"], end["enc0"])  # trained in epoch 1
    assert not same(seen[0]["dec"], seen[1]["dec"]) and same(seen[1]["dec"], end["dec"])


def test_a_model_built_frozen_freezes_its_layers_as_keras():
    inp = npae.Input((6,))
    frozen = npae.Model(inp, Dense(3)(inp), trainable=False)
    assert not frozen.trainable and frozen.trainable_weights == [] and len(frozen.non_trainable_weights) == 2
    stack = npae.Sequential([npae.Input((6,)), Dense(3)], trainable=False)
    stack.add(Dense(2))  # a layer added later follows the model
    assert stack.trainable_weights == [] and not stack.layers[-1].trainable
    stack.trainable = True
    stack.add(Dense(2))
    assert len(stack.trainable_weights) == 6
    with pytest.raises(TypeError, match="trainable must be True or False"):
        npae.Model(inp, Dense(3)(inp), trainable="no")
