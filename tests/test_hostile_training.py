"""Training that goes wrong leaves nothing behind: a batch that is not applied (a non-finite loss)
changes no weight, BatchNormalization's moving statistics included, on both paths; a batch whose
activations could not fit in memory is refused with one clear error before anything runs."""

import time

import numpy as np
import pytest

import npae
from npae.layers import BatchNormalization, Conv2D, Dense, Input, MaxPooling2D, UpSampling2D
from npae.models import Model, Sequential


def bn_model(jit):
    npae.set_random_seed(0)
    model = Sequential([Input((6,)), Dense(5, activation="relu"), BatchNormalization(), Dense(6, activation="sigmoid")])
    model.compile(optimizer="adam", loss="mse", jit_compile=jit)
    return model


def moving(model):
    bn = next(layer for layer in model.layers if isinstance(layer, BatchNormalization))
    return [bn.params["moving_mean"].copy(), bn.params["moving_variance"].copy()]


@pytest.mark.parametrize("bad", [np.nan, 1e30])
@pytest.mark.parametrize("jit", [False, True])
def test_a_batch_that_is_not_applied_leaves_the_moving_statistics_alone(jit, bad):
    x = np.random.default_rng(0).random((32, 6)).astype(np.float32)
    x[20, 3] = bad  # in the third batch of 8
    model = bn_model(jit)
    hist = model.fit(x, x, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert "batch 3; training stopped and that batch was not applied" in hist.stopped_reason
    clean = bn_model(jit)  # the same model, trained on the two batches before the bad one
    clean.fit(x[:16], x[:16], epochs=1, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(moving(model), moving(clean)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.get_weights(), clean.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(model.predict(x[:16], verbose=0)).all()


@pytest.mark.parametrize("jit", [False, True])
def test_train_on_batch_with_a_nan_changes_nothing(jit):
    x = np.random.default_rng(1).random((8, 6)).astype(np.float32)
    model = bn_model(jit)
    model.train_on_batch(x, x)
    before = model.get_weights()
    bad = x.copy()
    bad[0, 0] = np.nan
    assert not np.isfinite(model.train_on_batch(bad, x))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_batch_whose_activations_cannot_fit_is_refused_before_it_runs():
    npae.set_random_seed(0)
    x = Input((28, 28, 1))
    huge = Model(x, Conv2D(1, 3, padding="same")(MaxPooling2D(2)(UpSampling2D(3000)(x))))  # 7e9 values an image
    huge.compile(optimizer="sgd", loss="mse")
    image = np.zeros((1, 28, 28, 1), np.float32)
    start = time.perf_counter()
    for call in (lambda: huge.predict(image, verbose=0), lambda: huge(image)):
        with pytest.raises(ValueError, match=r"on a batch of 1 would need [\d,.]+ GiB for its activations"):
            call()
    assert time.perf_counter() - start < 2.0
    # 0.56 GB of activations an image, its output 28x28 again: a few images fit, 64 do not
    big = Model(x, Conv2D(1, 3, padding="same")(MaxPooling2D(300)(UpSampling2D(300)(x))))
    big.compile(optimizer="sgd", loss="mse")
    images = np.zeros((64, 28, 28, 1), np.float32)
    for call in (lambda: big.fit(images, images, batch_size=64, verbose=0),
                 lambda: big.evaluate(images, images, batch_size=64, verbose=0),
                 lambda: big.train_on_batch(images, images),
                 lambda: big.fit(((images, images) for _ in range(2)), steps_per_epoch=1, verbose=0)):
        with pytest.raises(ValueError, match="on a batch of 64 would need .*use a smaller batch_size"):
            call()
