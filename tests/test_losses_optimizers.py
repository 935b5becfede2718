"""Losses (with the L1 penalty) pass gradcheck; optimizers reproduce Keras's golden values, on both
paths' update functions."""

import numpy as np
import pytest

from npae import gradcheck, losses, optimizers, regularizers
from npae.activations import sigmoid, softmax
from npae.fast import elementwise

OPS = [pytest.param(None, id="reference"), pytest.param(elementwise, id="fast")]


def step(opt, params, grads, ops):
    if ops is None:
        opt.step(params, grads)
    else:
        opt.step(params, grads, ops)


@pytest.mark.parametrize("name", ["mse", "binary_crossentropy", "binary_crossentropy_clipped"])
def test_loss_gradcheck(name):
    rng = np.random.default_rng(0)
    for shape in [(3, 5), (2, 4, 4, 1)]:
        y = rng.uniform(0.05, 0.95, shape)
        t = rng.uniform(0, 1, shape)
        report = gradcheck.check_loss(name, y, t)
        assert report.passed, report.table()


def test_bce_from_logits_gradcheck_and_stability():
    rng = np.random.default_rng(1)
    z, t = rng.standard_normal((4, 6)) * 3, rng.uniform(0, 1, (4, 6))
    assert gradcheck.check_loss(losses.BinaryCrossentropy(from_logits=True), z, t).passed
    loss = losses.BinaryCrossentropy(from_logits=True)
    big = np.array([[1000.0, -1000.0]])
    assert np.isclose(loss(np.array([[1.0, 0.0]]), big), 0.0)  # Keras's order: (y_true, y_pred)
    value, cache = loss.forward(big, np.array([[0.0, 1.0]]))
    assert np.isclose(value, 1000.0)
    np.testing.assert_allclose(loss.backward(cache), (sigmoid(big) - [[0.0, 1.0]]) / 2)


def test_bce_logits_equals_clipped_bce_where_unclipped():
    rng = np.random.default_rng(2)
    z, t = rng.standard_normal((5, 7)), rng.uniform(0, 1, (5, 7))
    a = losses.BinaryCrossentropy(from_logits=True)(t, z)
    b = losses.BinaryCrossentropy()(t, sigmoid(z))
    assert np.isclose(a, b, rtol=1e-9)


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_crossentropy_gradcheck(from_logits):
    rng = np.random.default_rng(3)
    for shape in [(4, 3), (2, 3, 3, 5)]:
        y = rng.standard_normal(shape) * 2 if from_logits else rng.uniform(0.05, 0.95, shape)
        t = np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]
        report = gradcheck.check_loss(losses.CategoricalCrossentropy(from_logits=from_logits), y, t)
        assert report.passed, report.table()


def test_categorical_crossentropy_golden_value_from_keras():
    # Keras's CategoricalCrossentropy docstring: per sample [0.0513, 2.303], their mean 1.177
    t, y = np.array([[0, 1, 0], [0, 0, 1]]), np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    loss = losses.get("categorical_crossentropy")
    assert isinstance(loss, losses.CategoricalCrossentropy) and loss.name == "categorical_crossentropy"
    assert loss(t, y) == pytest.approx((-np.log(0.95) - np.log(0.1)) / 2, rel=1e-12)
    assert round(loss(t, y), 3) == 1.177
    # the logits form is the probabilities form of softmax(z) where nothing is clipped
    z = np.random.default_rng(4).standard_normal((5, 4))
    tz = np.random.default_rng(5).dirichlet(np.ones(4), size=5)
    assert losses.CategoricalCrossentropy(from_logits=True)(tz, z) == pytest.approx(loss(tz, softmax(z)), rel=1e-12)
    big = np.array([[1000.0, -1000.0, 0.0]])
    assert losses.CategoricalCrossentropy(from_logits=True)(np.array([[1.0, 0.0, 0.0]]), big) == 0.0


def test_categorical_crossentropy_arguments_and_targets():
    assert losses.CategoricalCrossentropy(label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size").name \
        == "categorical_crossentropy"
    with pytest.raises(NotImplementedError, match="label_smoothing=0.1 is a Keras argument npae does not support"):
        losses.CategoricalCrossentropy(label_smoothing=0.1)
    with pytest.raises(NotImplementedError, match="axis=1"):
        losses.CategoricalCrossentropy(axis=1)
    for loss in (losses.CategoricalCrossentropy(), losses.CategoricalCrossentropy(from_logits=True)):
        again = losses.get(losses.serialize(loss))
        assert type(again) is type(loss) and again.from_logits == loss.from_logits
    assert losses.CategoricalCrossentropy(from_logits=True).logits_activation == "softmax"
    assert losses.BinaryCrossentropy(from_logits=True).logits_activation == "sigmoid"
    assert losses.CategoricalCrossentropy().logits_activation is None and losses.get("mse").logits_activation is None
    with pytest.raises(ValueError, match=r"y_true has shape \(4, 1\), the output \(4, 3\).*to_categorical"):
        losses.get("categorical_crossentropy")(np.zeros((4, 1)), np.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"one-hot rows .* in \[0, 1\], got values in \[0, 7\].*to_categorical"):
        losses.get("categorical_crossentropy").check_targets(np.array([[0.0, 7.0]]))
    with pytest.warns(UserWarning, match="one class"):
        losses.get("categorical_crossentropy").check_targets(np.ones((3, 1)))


def test_keras_reduction_is_mean_over_everything():
    y, t = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]), np.zeros((2, 3))
    assert losses.get("mse")(t, y) == np.mean(y ** 2)
    assert losses.get("mae")(t, -y) == np.mean(y)
    # categorical cross-entropy sums over the classes (the last axis), then takes the mean of the rest
    p = np.full((2, 3, 4), 0.25)
    assert losses.get("categorical_crossentropy")(np.eye(4)[[[0, 1, 2], [3, 0, 1]]], p) == pytest.approx(np.log(4))


def test_loss_shape_mismatch_is_an_error_not_a_broadcast():
    with pytest.raises(ValueError, match=r"same shape, got \(4, 3\) and \(4, 1\)"):
        losses.get("mse")(np.zeros((4, 1)), np.zeros((4, 3)))


def test_l1_penalty_value_and_gradient():
    h = np.array([[1.0, -2.0], [0.5, 0.0]])
    reg = regularizers.l1(0.1)
    assert np.isclose(reg.penalty(h), 0.1 * 3.5 / 2)
    np.testing.assert_allclose(reg.gradient(h), 0.1 / 2 * np.sign(h))


def test_regularizers_by_keras_name():
    # Keras takes activity_regularizer="l1" (or "l2"), with its default factor 0.01
    assert isinstance(regularizers.get("l1"), regularizers.L1) and regularizers.get("L1").l1 == 0.01
    assert isinstance(regularizers.get("l2"), regularizers.L2) and regularizers.get("l2").l2 == 0.01
    with pytest.raises(ValueError, match="unknown regularizer 'l3'"):
        regularizers.get("l3")


@pytest.mark.parametrize("ops", OPS)
def test_adam_golden_value_from_keras(ops):
    p = {"w": np.array([1.0, 2.0, 3.0, 4.0], np.float32)}
    step(optimizers.Adam(learning_rate=0.5), p, {"w": np.array([1.0, 6.0, 7.0, 2.0], np.float32)}, ops)
    np.testing.assert_allclose(p["w"], [0.5, 1.5, 2.5, 3.5], rtol=1e-5)


def test_adam_defaults_are_keras():
    a = optimizers.Adam()
    assert (a.learning_rate, a.beta_1, a.beta_2, a.epsilon) == (0.001, 0.9, 0.999, 1e-7)


@pytest.mark.parametrize("ops", OPS)
def test_adadelta_golden_values_from_keras(ops):
    # Keras's own golden test: one step with grad 0.01, then steps with grads 0.1 ... 1.0 (one per
    # element); before each of those steps every element sits at the same golden value.
    opt = optimizers.Adadelta(learning_rate=1.0, rho=0.8, epsilon=1e-6)
    p = {"w": np.ones(10)}
    step(opt, p, {"w": np.full(10, 0.01)}, ops)
    for golden in [0.9978, 0.9947, 0.9915, 0.9882, 0.9849]:
        np.testing.assert_allclose(p["w"], golden, rtol=5e-4, atol=5e-4)
        step(opt, p, {"w": np.arange(1, 11) / 10}, ops)


@pytest.mark.parametrize("ops", OPS)
def test_adadelta_single_step_from_keras(ops):
    p = {"w": np.array([1.0, 2.0, 3.0, 4.0], np.float32)}
    step(optimizers.Adadelta(learning_rate=0.5), p, {"w": np.array([1.0, 6.0, 7.0, 2.0], np.float32)}, ops)
    np.testing.assert_allclose(p["w"], [0.9993, 1.9993, 2.9993, 3.9993], rtol=1e-4, atol=1e-4)


def test_adadelta_defaults_follow_the_paper():
    a = optimizers.Adadelta()
    assert (a.learning_rate, a.rho, a.epsilon) == (1.0, 0.95, 1e-7)


@pytest.mark.parametrize("ops", OPS)
def test_sgd_and_momentum(ops):
    p = {"w": np.array([1.0])}
    step(optimizers.SGD(0.1), p, {"w": np.array([2.0])}, ops)
    assert np.isclose(p["w"][0], 0.8)
    opt, p = optimizers.SGD(0.1, momentum=0.9), {"w": np.array([1.0])}
    step(opt, p, {"w": np.array([1.0])}, ops)
    step(opt, p, {"w": np.array([1.0])}, ops)
    assert np.isclose(p["w"][0], 1.0 - 0.1 - (0.9 * 0.1 + 0.1))


def test_optimizer_state_is_per_parameter_key():
    opt = optimizers.Adam()
    params = {"dense/kernel": np.ones(3, np.float32), "dense/bias": np.ones(2, np.float32)}
    opt.step(params, {k: np.ones_like(v) for k, v in params.items()})
    assert set(opt.state) == {"dense/kernel", "dense/bias"} and set(opt.state["dense/bias"]) == {"m", "v"}


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        optimizers.get("adamw")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        losses.get("hinge")


@pytest.mark.parametrize("make,message", [
    (lambda: optimizers.Adam(learning_rate=float("nan")), r"learning_rate must be a finite number in \[0, inf\]"),
    (lambda: optimizers.Adam(learning_rate=-1), r"learning_rate must be a finite number"),
    (lambda: optimizers.Adam(beta_1=1.0), r"beta_1 must be a finite number in \[0, 1\)"),
    (lambda: optimizers.Adadelta(rho=1.5), r"rho must be a finite number in \[0, 1\)"),
    (lambda: optimizers.SGD(momentum=-0.1), r"momentum must be a finite number in \[0, 1\]"),
    (lambda: optimizers.RMSprop(epsilon=float("inf")), r"epsilon must be a finite number"),
])
def test_optimizer_arguments_that_would_give_wrong_numbers_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
    with pytest.raises(ValueError, match="iterations must be a non-negative int"):
        optimizers.Adam().iterations = -1


@pytest.mark.parametrize("ops", OPS)
def test_rmsprop_golden_value_from_keras(ops):
    # Keras's RMSprop docstring example: var 10, loss var^2 / 2 (grad = var), lr 0.1 -> 9.683772
    p = {"w": np.array([10.0], np.float32)}
    step(optimizers.RMSprop(learning_rate=0.1), p, {"w": p["w"].copy()}, ops)
    np.testing.assert_allclose(p["w"], [9.683772], rtol=1e-6)


def test_keras_default_optimizer_is_rmsprop():
    from npae.layers import Dense, Input
    from npae.models import Model

    x = Input(shape=(3,))
    m = Model(x, Dense(3)(x))
    m.compile(loss="mse")
    assert isinstance(m.optimizer, optimizers.RMSprop)
    r = optimizers.RMSprop()
    assert (r.learning_rate, r.rho, r.momentum, r.epsilon, r.centered) == (0.001, 0.9, 0.0, 1e-7, False)


@pytest.mark.parametrize("ops", OPS)
def test_sgd_nesterov_golden_values(ops):
    # by hand, lr 0.1, momentum 0.9, grad 1 twice: v1 = -0.1, w1 = 1 + 0.9 v1 - 0.1 = 0.81;
    # v2 = 0.9 v1 - 0.1 = -0.19, w2 = w1 + 0.9 v2 - 0.1 = 0.539
    opt, p = optimizers.SGD(0.1, momentum=0.9, nesterov=True), {"w": np.array([1.0, 1.0], np.float32)}
    step(opt, p, {"w": np.ones(2, np.float32)}, ops)
    np.testing.assert_allclose(p["w"], [0.81, 0.81], rtol=1e-6)
    step(opt, p, {"w": np.ones(2, np.float32)}, ops)
    np.testing.assert_allclose(p["w"], [0.539, 0.539], rtol=1e-6)
    np.testing.assert_allclose(opt.state["w"]["velocity"], [-0.19, -0.19], rtol=1e-6)


@pytest.mark.parametrize("ops", OPS)
def test_rmsprop_momentum_and_centered_golden_values(ops):
    # by hand, lr 0.1, rho 0.9, grad 2 twice, epsilon 1e-7:
    # s1 = 0.1 * 4 = 0.4, step1 = 0.2 / sqrt(0.4); s2 = 0.9 s1 + 0.4 = 0.76, step2 = 0.2 / sqrt(0.76)
    s1, s2 = 0.4, 0.76
    step1, step2 = 0.2 / np.sqrt(s1 + 1e-7), 0.2 / np.sqrt(s2 + 1e-7)
    opt, p = optimizers.RMSprop(0.1, momentum=0.5), {"w": np.array([1.0], np.float64)}
    step(opt, p, {"w": np.array([2.0])}, ops)
    step(opt, p, {"w": np.array([2.0])}, ops)
    m2 = 0.5 * step1 + step2  # momentum: m = 0.5 m + step, w -= m
    np.testing.assert_allclose(p["w"], [1.0 - step1 - m2], rtol=1e-12)
    # centered: a1 = 0.1 * 2 = 0.2, the denominator s1 - a1^2 = 0.36: one step of 0.2 / 0.6
    opt, p = optimizers.RMSprop(0.1, centered=True), {"w": np.array([1.0], np.float64)}
    step(opt, p, {"w": np.array([2.0])}, ops)
    np.testing.assert_allclose(p["w"], [1.0 - 0.2 / np.sqrt(0.36 + 1e-7)], rtol=1e-12)
    assert set(opt.state["w"]) == {"velocity", "average_gradient"}
