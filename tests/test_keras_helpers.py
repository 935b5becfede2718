"""The small Keras helpers ported programs use: gradient clipping in the optimizers (clipnorm,
clipvalue, global_clipnorm), npae.backend and npae.utils."""

import numpy as np
import pytest

import npae
from npae import backend as K  # noqa: N812 (Keras programs' own spelling)
from npae import optimizers
from npae.functional.optimizers import clip_gradients
from npae.layers import Dense, Input
from npae.utils import to_categorical


def grads_and_params():
    rng = np.random.default_rng(0)
    return ({"a": rng.normal(size=(3, 4)), "b": rng.normal(size=5) * 10},
            {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=5)})


def test_clipping_rules_are_keras_s():
    g = {"a": np.array([3.0, 4.0]), "b": np.array([0.3, 0.4])}
    by_norm = clip_gradients(list(g.values()), clipnorm=1.0)
    np.testing.assert_allclose(by_norm[0], [0.6, 0.8])  # norm 5 -> 1
    np.testing.assert_allclose(by_norm[1], [0.3, 0.4])  # norm 0.5: below the bound, unchanged
    by_global = clip_gradients(list(g.values()), global_clipnorm=1.0)
    total = np.sqrt(25 + 0.25)
    np.testing.assert_allclose(by_global[0], np.array([3.0, 4.0]) / total)
    np.testing.assert_allclose(by_global[1], np.array([0.3, 0.4]) / total)
    np.testing.assert_allclose(clip_gradients([np.array([-3.0, 0.5, 2.0])], clipvalue=1.0)[0], [-1.0, 0.5, 1.0])
    assert clip_gradients(list(g.values()))[0] is g["a"]  # no clipping asked: the same arrays


@pytest.mark.parametrize("clip", [{"clipnorm": 0.5}, {"global_clipnorm": 0.5}, {"clipvalue": 0.1}])
def test_an_optimizer_steps_with_the_clipped_gradients_and_leaves_them_as_they_are(clip):
    grads, params = grads_and_params()
    clipped = dict(zip(grads, clip_gradients(list(grads.values()), **clip)))
    want = {k: p - 0.1 * clipped[k] for k, p in params.items()}
    before = {k: g.copy() for k, g in grads.items()}
    optimizers.SGD(learning_rate=0.1, **clip).step(params, grads)
    for k in params:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-12)
        np.testing.assert_array_equal(grads[k], before[k])


def test_clipping_is_the_same_on_both_paths_and_survives_a_file(tmp_path):
    x = np.random.default_rng(0).random((16, 6)) * 5
    runs = []
    for jit in (False, True):
        npae.set_random_seed(0)
        model = npae.Sequential([Input((6,)), Dense(6, activation="relu"), Dense(6)]).astype("float64")
        model.compile(optimizer=optimizers.Adam(learning_rate=0.01, clipnorm=0.01), loss="mse", jit_compile=jit)
        model.fit(x, x, epochs=2, batch_size=8, shuffle=False, verbose=0)
        runs.append(model)
    for a, b in zip(runs[0].get_weights(), runs[1].get_weights()):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-10)
    runs[0].save(tmp_path / "m.npz")
    assert npae.load_model(tmp_path / "m.npz").optimizer.get_config()["config"]["clipnorm"] == 0.01


def test_clipping_arguments_are_checked():
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        optimizers.Adam(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="clipnorm must be a finite number in \\(0"):
        optimizers.SGD(clipnorm=-1.0)
    with pytest.raises(NotImplementedError, match="weight_decay"):
        optimizers.Adam(weight_decay=0.01)


def test_backend_helpers():
    x = Input((28, 28, 1))
    assert K.int_shape(x) == (None, 28, 28, 1) and K.int_shape(np.zeros((2, 3))) == (2, 3)
    assert K.image_data_format() == "channels_last" and K.floatx() == "float32" and K.epsilon() == 1e-7
    K.clear_session()
    assert Dense(2).name == "dense" and Dense(2).name == "dense_1"
    with pytest.raises(AttributeError, match="npae.backend has no 'exp'.*automatic differentiation"):
        K.exp(x)


def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([0, 2, 1]), [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    assert to_categorical(np.array([[1], [0]]), num_classes=4).shape == (2, 4)
    assert to_categorical([1, 0], dtype="int64").dtype == np.int64
    with pytest.raises(ValueError, match="index 3 is not below num_classes=3"):
        to_categorical([3], num_classes=3)
    with pytest.raises(ValueError, match="must be >= 0"):
        to_categorical([-1])
    with pytest.raises(ValueError, match="whole-number class indices"):
        to_categorical([0.5])
