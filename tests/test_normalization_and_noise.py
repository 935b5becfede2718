"""BatchNormalization, Dropout and GaussianNoise: hand-worked values, float64 gradient checks in
training and inference, Keras's weight order and moving-statistics updates, both paths of a model,
and clear errors."""

import copy
import json
import math

import numpy as np
import pytest

import npae
from npae import gradcheck
from npae.functional import batchnorm, noise
from npae.layers import Conv2D, Dense, Flatten, Input
from npae.layers.noise import Dropout, GaussianNoise, SpatialDropout2D
from npae.layers.normalization import BatchNormalization
from npae.models import Model, load_model

EPS = 1e-3  # Keras's default epsilon


def passes(layer, shape=None, x=None, seed=0):
    report = gradcheck.check_layer(layer, x=x, input_shape=shape, seed=seed)
    assert report.passed and all(report.invariants.values()), report.table()
    assert all(c.checked > 0 for c in report.checks)
    return report


def bn(shape, dtype="float64", **kwargs):
    layer = BatchNormalization(dtype=dtype, **kwargs)
    layer.build(shape)
    return layer


def numeric_grads(f, tensors, eps=1e-6):
    """Central differences of the scalar f() in every element of each tensor (modified in place)."""
    out = []
    for t in tensors:
        g = np.zeros_like(t)
        for i in np.ndindex(t.shape):
            saved = t[i]
            t[i] = saved + eps
            fp = f()
            t[i] = saved - eps
            fm = f()
            t[i] = saved
            g[i] = (fp - fm) / (2 * eps)
        out.append(g)
    return out


# -- BatchNormalization: values worked out by hand -------------------------------------------------

def test_bn_training_output_of_a_tiny_batch_by_hand():
    # channel 0 holds 1, 3: mean 2, biased variance ((1-2)^2 + (3-2)^2) / 2 = 1
    # channel 1 holds 2, 6: mean 4, biased variance (4 + 4) / 2 = 4
    layer = bn((2,))
    layer.set_weights([[2.0, 0.5], [0.1, -1.0], [0.0, 0.0], [1.0, 1.0]])
    out, _ = layer.forward(np.array([[1.0, 2.0], [3.0, 6.0]]), training=True)
    a, b = 1 / math.sqrt(1 + EPS), 2 / math.sqrt(4 + EPS)
    expected = [[2.0 * -a + 0.1, 0.5 * -b - 1.0],
                [2.0 * a + 0.1, 0.5 * b - 1.0]]
    np.testing.assert_allclose(out, expected, rtol=1e-14, atol=1e-14)


def test_bn_moving_statistics_after_two_training_steps_with_momentum_0_9():
    layer = bn((2,), momentum=0.9)
    # step 1: channel 0 holds 1, 3 (mean 2, biased variance 1; unbiased would be 2);
    #         channel 1 holds 0, 0 (mean 0, variance 0)
    layer.forward(np.array([[1.0, 0.0], [3.0, 0.0]]), training=True)
    mm, mv = layer.params["moving_mean"], layer.params["moving_variance"]
    np.testing.assert_allclose(mm, [0.9 * 0 + 0.1 * 2, 0.0], rtol=1e-14, atol=1e-15)  # 0.2, 0
    np.testing.assert_allclose(mv, [0.9 * 1 + 0.1 * 1, 0.9 * 1 + 0.1 * 0], rtol=1e-14)  # 1.0, 0.9 (not 1.1)
    # step 2: channel 0 holds 0, 4, 8 (mean 4, biased variance (16 + 0 + 16) / 3 = 32/3);
    #         channel 1 holds 2, 2, 2 (mean 2, variance 0)
    layer.forward(np.array([[0.0, 2.0], [4.0, 2.0], [8.0, 2.0]]), training=True)
    np.testing.assert_allclose(mm, [0.9 * 0.2 + 0.1 * 4, 0.9 * 0 + 0.1 * 2], rtol=1e-14)  # 0.58, 0.2
    np.testing.assert_allclose(mv, [0.9 * 1.0 + 0.1 * 32 / 3, 0.9 * 0.9 + 0.1 * 0], rtol=1e-14)  # 1.9667, 0.81
    assert mm is layer.params["moving_mean"]  # updated in place: the model's arrays stay the same


def test_bn_inference_uses_the_moving_statistics_and_changes_nothing():
    layer = bn((2,))
    layer.set_weights([[2.0, 0.5], [0.1, -1.0], [1.0, -2.0], [3.0, 0.25]])
    before = layer.get_weights()
    out, _ = layer.forward(np.array([[4.0, 0.0], [1.0, -2.0]]), training=False)
    expected = [[2.0 * (4 - 1) / math.sqrt(3 + EPS) + 0.1, 0.5 * (0 + 2) / math.sqrt(0.25 + EPS) - 1.0],
                [0.1, -1.0]]  # x = the moving mean gives beta
    np.testing.assert_allclose(out, expected, rtol=1e-14, atol=1e-14)
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)


def _by_hand(x, axis, gamma, beta):
    """Batch normalisation channel by channel with plain Python sums (math.fsum)."""
    x = np.moveaxis(x, axis, -1)
    out = np.empty_like(x)
    for c in range(x.shape[-1]):
        v = x[..., c].ravel().tolist()
        m = math.fsum(v) / len(v)
        var = math.fsum((t - m) ** 2 for t in v) / len(v)
        out[..., c] = gamma[c] * (x[..., c] - m) / math.sqrt(var + EPS) + beta[c]
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("axis", [-1, 3, 1, 2, -2])
def test_bn_on_images_normalises_each_channel_over_every_other_axis(axis):
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, (4, 5, 3, 2))
    layer = bn(x.shape[1:], axis=axis)
    c = x.shape[axis]
    gamma, beta = rng.uniform(0.5, 2, c), rng.normal(size=c)
    layer.set_weights([gamma, beta, np.zeros(c), np.ones(c)])
    out, _ = layer.forward(x, training=True)
    np.testing.assert_allclose(out, _by_hand(x, axis, gamma, beta), rtol=1e-12, atol=1e-12)
    assert [w.shape for w in layer.get_weights()] == [(c,)] * 4


def test_bn_float32_matches_float64():
    rng = np.random.default_rng(4)
    x = rng.normal(1.0, 2.0, (8, 3, 3, 4))
    l32, l64 = bn((3, 3, 4), dtype="float32"), bn((3, 3, 4))
    out32, _ = l32.forward(x.astype(np.float32), training=True)
    out64, _ = l64.forward(x, training=True)
    assert out32.dtype == np.float32 and all(w.dtype == np.float32 for w in l32.weights)
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(l32.params["moving_variance"], l64.params["moving_variance"], rtol=1e-5)
    dx32, grads32 = l32.backward(np.ones_like(out32), l32.forward(x.astype(np.float32), training=True)[1])
    assert dx32.dtype == np.float32 and all(g.dtype == np.float32 for g in grads32.values())


def test_bn_backward_is_the_step_by_step_chain_rule():
    # the functional backward (the collected form) against the derivation term by term
    rng = np.random.default_rng(5)
    x, dy = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    gamma, beta = rng.uniform(0.5, 2, 3), rng.normal(size=3)
    _, cache = batchnorm.forward(x, gamma, beta, -1, EPS)
    dx, dgamma, dbeta = batchnorm.backward(dy, cache)
    m = x.shape[0]
    mu = x.sum(0) / m
    var = ((x - mu) ** 2).sum(0) / m
    xhat = (x - mu) / np.sqrt(var + EPS)
    dxhat = dy * gamma
    dvar = (dxhat * (x - mu)).sum(0) * -0.5 * (var + EPS) ** -1.5
    dmu = (dxhat * -1 / np.sqrt(var + EPS)).sum(0) + dvar * (-2 / m) * (x - mu).sum(0)
    expected_dx = dxhat / np.sqrt(var + EPS) + dvar * 2 * (x - mu) / m + dmu / m
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dgamma, (dy * xhat).sum(0), rtol=1e-12)
    np.testing.assert_allclose(dbeta, dy.sum(0), rtol=1e-12)
    np.testing.assert_allclose(dx.sum(0), 0.0, atol=1e-12)  # the output's mean cannot move with x


# -- BatchNormalization: gradient checks ---------------------------------------------------------------

@pytest.mark.parametrize("shape,kwargs", [
    ((4,), {}), ((5,), {"center": False}), ((3,), {"scale": False}), ((3,), {"center": False, "scale": False}),
    ((3, 4, 2), {}), ((3, 4, 2), {"axis": 1}), ((3, 4, 2), {"axis": -2, "scale": False}), ((2, 3), {"axis": 1}),
    ((4, 2, 3), {"axis": 3, "center": False, "epsilon": 0.1}),
])
def test_bn_training_gradcheck(shape, kwargs):
    report = passes(BatchNormalization(**kwargs), shape)
    names = [c.name.split(".")[-1] for c in report.checks]
    expected = ["input", *(["gamma"] if kwargs.get("scale", True) else []),
                *(["beta"] if kwargs.get("center", True) else []), "moving_mean", "moving_variance"]
    assert names == expected


def test_bn_training_gradcheck_of_a_batch_of_one_image_and_wide_values():
    # one image: the statistics run over its pixels only; values far from 0 with a large spread
    x = np.random.default_rng(6).normal(5.0, 10.0, (1, 3, 3, 2))
    passes(BatchNormalization(), x=x)


@pytest.mark.parametrize("shape,kwargs", [((4,), {}), ((3, 4, 2), {"axis": 1, "center": False}),
                                          ((3, 2), {"scale": False})])
def test_bn_inference_gradients_by_central_differences(shape, kwargs):
    rng = np.random.default_rng(7)
    layer = bn(shape, **kwargs)
    c = layer.params["moving_mean"].shape[0]
    for k in layer.params:  # move every weight off its initial value
        layer.params[k][...] = rng.uniform(0.5, 1.5, c) if k in ("gamma", "moving_variance") else rng.normal(size=c)
    x = rng.normal(size=(3, *shape))
    u = rng.normal(size=x.shape)
    out, cache = layer.forward(x, training=False)
    dx, grads = layer.backward(u, cache)
    names = [k for k in layer.param_order if k in layer.params]
    assert list(grads) == names

    def f():
        return float(np.sum(u * layer.forward(x, training=False)[0]))

    numeric = numeric_grads(f, [x, *(layer.params[k] for k in names)])
    for name, analytic, num in zip(["x", *names], [dx, *(grads[k] for k in names)], numeric):
        np.testing.assert_allclose(analytic, num, rtol=1e-6, atol=1e-8, err_msg=name)


def test_bn_inference_backward_is_a_per_channel_scaling():
    layer = bn((2,))
    layer.set_weights([[2.0, 0.5], [0.0, 0.0], [0.0, 0.0], [3.0, 0.25]])
    _, cache = layer.forward(np.zeros((3, 2)), training=False)
    dx, _ = layer.backward(np.ones((3, 2)), cache)
    np.testing.assert_allclose(dx, np.tile([2 / math.sqrt(3 + EPS), 0.5 / math.sqrt(0.25 + EPS)], (3, 1)),
                               rtol=1e-14)


def test_frozen_bn_runs_in_inference_mode_as_keras_3():
    # Keras 3: trainable=False means inference mode, even when called with training=True
    layer = bn((2,), trainable=False)
    layer.set_weights([[1.0, 1.0], [0.0, 0.0], [1.0, 2.0], [4.0, 9.0]])
    out, _ = layer.forward(np.array([[3.0, 5.0], [1.0, 2.0]]), training=True)
    np.testing.assert_allclose(out, [[2 / math.sqrt(4 + EPS), 3 / math.sqrt(9 + EPS)], [0.0, 0.0]], rtol=1e-14)
    np.testing.assert_array_equal(layer.params["moving_mean"], [1.0, 2.0])  # no update
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 4
    # check_layer runs training=True: for a frozen layer that is the inference map, and its
    # gradients of all four weights (the moving statistics included) are checked
    report = passes(BatchNormalization(trainable=False), (3, 2))
    assert len(report.checks) == 5


# -- BatchNormalization: weights, config, errors ---------------------------------------------------------

def test_bn_weights_in_keras_order_and_trainability():
    layer = BatchNormalization(gamma_initializer="zeros", beta_initializer="ones", moving_mean_initializer="ones",
                               moving_variance_initializer="zeros")
    layer.build((5, 5, 16))
    assert list(layer.params) == ["gamma", "beta", "moving_mean", "moving_variance"]
    w = layer.get_weights()
    assert [a.shape for a in w] == [(16,)] * 4 and layer.count_params() == 64  # Keras: 64 params, 32 non-trainable
    assert [float(a[0]) for a in w] == [0.0, 1.0, 1.0, 0.0]
    assert [a is b for a, b in zip(layer.trainable_weights, w[:2])] == [False, False]
    assert layer.trainable_weights[0] is layer.params["gamma"] and layer.trainable_weights[1] is layer.params["beta"]
    assert layer.trainable_param_names() == ["gamma", "beta"]
    assert len(layer.non_trainable_weights) == 2 and layer.non_trainable_weights[1] is layer.params["moving_variance"]
    new = [np.full(16, v) for v in (1.5, -0.5, 0.25, 2.0)]
    layer.set_weights(new)
    for k, v in zip(layer.param_order, new):
        np.testing.assert_array_equal(layer.params[k], v)
    for kwargs, names in [({"center": False}, ["gamma", "moving_mean", "moving_variance"]),
                          ({"scale": False}, ["beta", "moving_mean", "moving_variance"]),
                          ({"center": False, "scale": False}, ["moving_mean", "moving_variance"])]:
        other = bn((3,), **kwargs)
        assert [k for k in other.param_order if k in other.params] == names and len(other.get_weights()) == len(names)
    with pytest.raises(ValueError, match="expected 4 weight arrays"):
        layer.set_weights(new[:3])


def test_bn_get_config_round_trips():
    layer = BatchNormalization(axis=1, momentum=0.8, epsilon=1e-5, center=False, gamma_initializer="random_normal",
                               name="bn_a", dtype="float64")
    cfg = layer.get_config()
    assert cfg["axis"] == 1 and cfg["momentum"] == 0.8 and cfg["epsilon"] == 1e-5 and cfg["center"] is False
    assert cfg["gamma_initializer"] == "random_normal" and cfg["moving_variance_initializer"] == "ones"
    again = BatchNormalization.from_config(cfg)
    assert again.get_config() == cfg and type(again) is BatchNormalization
    assert json.loads(json.dumps(cfg)) == cfg


@pytest.mark.parametrize("kwargs,error,match", [
    ({"momentum": 1.5}, ValueError, "momentum must be a finite number in"),
    ({"momentum": -0.1}, ValueError, "momentum"),
    ({"momentum": "0.9"}, ValueError, "momentum"),
    ({"epsilon": 0.0}, ValueError, "epsilon must be a finite number in"),
    ({"epsilon": -1e-3}, ValueError, "epsilon"),
    ({"epsilon": float("nan")}, ValueError, "epsilon"),
    ({"center": "yes"}, ValueError, "center must be True or False"),
    ({"scale": 1}, ValueError, "scale must be True or False"),
    ({"axis": "channels"}, ValueError, "axis must be an int"),
    ({"axis": 1.0}, ValueError, "axis must be an int"),
    ({"axis": [1, 2]}, NotImplementedError, "several axes"),
    ({"synchronized": True}, NotImplementedError, "synchronized=True is a Keras argument npae does not support"),
    ({"renorm": True}, NotImplementedError, "renorm"),
    ({"renorm_clipping": {"rmax": 3}}, NotImplementedError, "renorm_clipping"),
    ({"virtual_batch_size": 8}, NotImplementedError, "virtual_batch_size"),
    ({"fused": True}, NotImplementedError, "fused"),
    ({"beta_regularizer": "l2"}, NotImplementedError, "beta_regularizer"),
    ({"gamma_regularizer": "l2"}, NotImplementedError, "gamma_regularizer"),
    ({"beta_constraint": "non_neg"}, NotImplementedError, "beta_constraint"),
    ({"gamma_constraint": "non_neg"}, NotImplementedError, "gamma_constraint"),
    ({"beta_initializer": "nope"}, ValueError, "unknown initializer"),
    ({"bogus": 1}, TypeError, "unexpected keyword argument 'bogus'"),
])
def test_bn_bad_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchNormalization(**kwargs)


def test_bn_keras_arguments_at_their_off_values_are_accepted():
    layer = BatchNormalization(axis=[-1], synchronized=False, renorm=False, beta_regularizer=None, fused=None)
    assert layer.axis == -1


@pytest.mark.parametrize("axis,shape,match", [(4, (3, 3, 2), "out of range"), (-5, (3, 3, 2), "out of range"),
                                              (0, (3,), "is the batch axis"), (-2, (3,), "is the batch axis")])
def test_bn_bad_axis_for_the_input_is_a_clear_error_at_build(axis, shape, match):
    with pytest.raises(ValueError, match=match):
        BatchNormalization(axis=axis).build(shape)
    with pytest.raises(ValueError, match=match):
        BatchNormalization(axis=axis)(Input(shape=shape))


def test_bn_wrong_input_shape_is_a_clear_error():
    layer = bn((4,))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 4\), got \(2, 5\)"):
        layer.forward(np.zeros((2, 5)), training=True)


# -- Dropout -------------------------------------------------------------------------------------------

def test_dropout_scales_kept_units_by_one_over_keep_and_drops_about_rate():
    x = np.random.default_rng(0).uniform(1, 2, (200, 500))
    layer = Dropout(0.25, seed=1, dtype="float64")
    out, _ = layer.forward(x, training=True)
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / 0.75, rtol=1e-15)  # 1 / (1 - rate) = 4/3
    assert abs(1 - kept.mean() - 0.25) < 0.005  # 100,000 units: the dropped fraction is about the rate
    assert out.dtype == np.float64


def test_dropout_backward_by_hand_and_the_functional_op_given_its_mask():
    x = np.array([[1.0, -2.0, 3.0, 4.0]])
    mask = np.array([[True, False, True, False]])
    out, cache = noise.dropout_forward(x, mask, 0.5)
    np.testing.assert_array_equal(out, [[2.0, 0.0, 6.0, 0.0]])
    np.testing.assert_array_equal(noise.dropout_backward(np.array([[1.0, 1.0, -3.0, 5.0]]), cache),
                                  [[2.0, 0.0, -6.0, 0.0]])
    layer = Dropout(0.6, seed=2, dtype="float64")
    xs = np.ones((3, 7))
    out, cache = layer.forward(xs, training=True)
    dx, grads = layer.backward(np.full((3, 7), 2.0), cache)
    np.testing.assert_allclose(dx, np.where(out != 0, 2.0 / 0.4, 0.0), rtol=1e-15)
    assert grads == {}


def test_dropout_and_gaussian_noise_are_the_identity_at_inference():
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    for layer in (Dropout(0.5, seed=0), GaussianNoise(0.7, seed=0), Dropout(0.0, seed=0)):
        out, cache = layer.forward(x, training=False)
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(layer.backward(np.ones_like(x), cache)[0], np.ones_like(x))
    out, _ = Dropout(0.0, seed=0).forward(x, training=True)  # rate 0 drops nothing, in training too
    np.testing.assert_array_equal(out, x)


def test_the_same_seed_gives_the_same_mask_and_a_new_draw_each_call():
    x = np.ones((6, 10))
    a, b, c = Dropout(0.5, seed=7), Dropout(0.5, seed=7), Dropout(0.5, seed=8)
    a1, a2 = a.forward(x, training=True)[0], a.forward(x, training=True)[0]
    b1, b2 = b.forward(x, training=True)[0], b.forward(x, training=True)[0]
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)  # each training pass draws a new mask
    assert not np.array_equal(a1, c.forward(x, training=True)[0])
    g1, g2 = GaussianNoise(0.3, seed=4), GaussianNoise(0.3, seed=4)
    np.testing.assert_array_equal(g1.forward(x, training=True)[0], g2.forward(x, training=True)[0])


def test_unseeded_noise_layers_follow_npae_set_random_seed():
    x = np.ones((5, 8))
    npae.set_random_seed(11)
    d1, n1 = Dropout(0.5), GaussianNoise(1.0)
    npae.set_random_seed(11)
    d2, n2 = Dropout(0.5), GaussianNoise(1.0)
    np.testing.assert_array_equal(d1.forward(x, training=True)[0], d2.forward(x, training=True)[0])
    np.testing.assert_array_equal(n1.forward(x, training=True)[0], n2.forward(x, training=True)[0])
    assert isinstance(d1.rng, np.random.Generator) and d1.rng is not d2.rng


def test_dropout_noise_shape_shares_one_draw_along_axes_of_size_one():
    x = np.ones((4, 6, 3))
    out, _ = Dropout(0.5, noise_shape=(None, 1, 3), seed=3).forward(x, training=True)
    assert all(np.array_equal(out[:, i], out[:, 0]) for i in range(6))
    assert set(np.unique(out)) <= {0.0, 2.0} and 0 < (out == 0).mean() < 1
    with pytest.raises(ValueError, match="does not broadcast"):
        Dropout(0.5, noise_shape=(None, 2, 3))(Input(shape=(6, 3)))
    with pytest.raises(ValueError, match="has 2 entries"):
        Dropout(0.5, noise_shape=(None, 3)).build((6, 3))
    with pytest.raises(ValueError, match="does not broadcast"):
        Dropout(0.5, noise_shape=(3, 1, 3), seed=0).forward(x, training=True)  # batch of 4, noise for 3


@pytest.mark.parametrize("rate", [0.3, 0.7])
def test_dropout_gradcheck_with_a_fixed_seed(rate):
    report = passes(Dropout(rate, seed=5), (4, 3))
    assert report.checks[0].checked == 36
    passes(Dropout(rate, noise_shape=(None, 1, 3), seed=6), (4, 3))


# -- SpatialDropout2D ---------------------------------------------------------------------------------

def test_spatial_dropout_drops_whole_channels_and_scales_the_rest():
    x = np.random.default_rng(3).uniform(1, 2, (400, 3, 4, 25))
    layer = SpatialDropout2D(0.3, seed=4, dtype="float64")
    out, cache = layer.forward(x, training=True)
    kept = out[:, 0, 0, :] != 0  # (N, C): one draw per image and channel
    assert np.array_equal(out != 0, np.broadcast_to(kept[:, None, None, :], x.shape))
    np.testing.assert_allclose(out[out != 0], x[out != 0] / 0.7, rtol=1e-15)
    assert abs(1 - kept.mean() - 0.3) < 0.02  # 10,000 channels: the dropped fraction is about the rate
    dx, grads = layer.backward(np.full_like(x, 2.0), cache)
    np.testing.assert_allclose(dx, np.where(out != 0, 2.0 / 0.7, 0.0), rtol=1e-15)
    assert grads == {}
    for training, rate in ((False, 0.3), (True, 0.0)):  # the identity at inference, and at rate 0
        y, c = SpatialDropout2D(rate, seed=0).forward(x, training=training)
        np.testing.assert_array_equal(y, x.astype(np.float32))
        np.testing.assert_array_equal(SpatialDropout2D(rate).backward(x, c)[0], x)


def test_spatial_dropout_draws_from_its_seed_and_npae_set_random_seed():
    x = np.ones((4, 2, 2, 6))
    a, b = SpatialDropout2D(0.5, seed=7), SpatialDropout2D(0.5, seed=7)
    a1, b1 = a.forward(x, training=True)[0], b.forward(x, training=True)[0]
    np.testing.assert_array_equal(a1, b1)
    assert not np.array_equal(a1, a.forward(x, training=True)[0])  # a new draw each training pass
    npae.set_random_seed(12)
    c = SpatialDropout2D(0.5)
    npae.set_random_seed(12)
    np.testing.assert_array_equal(c.forward(x, training=True)[0], SpatialDropout2D(0.5).forward(x, training=True)[0])


@pytest.mark.parametrize("rate", [0.3, 0.7])
def test_spatial_dropout_gradcheck_with_a_fixed_mask(rate):
    report = passes(SpatialDropout2D(rate, seed=5), (3, 2, 4))
    assert report.checks[0].checked == 3 * 3 * 2 * 4


@pytest.mark.parametrize("make,error,match", [
    (lambda: SpatialDropout2D(1.0), ValueError, r"SpatialDropout2D: rate must be a finite number in \[0, 1\)"),
    (lambda: SpatialDropout2D(0.5, seed=-2), ValueError, "seed must be a non-negative int"),
    (lambda: SpatialDropout2D(0.5, data_format="channels_first"), NotImplementedError,
     "data_format='channels_first' is a Keras argument npae does not support"),
    (lambda: SpatialDropout2D(0.5, noise_shape=(None, 1, 1, 3)), TypeError, "unexpected keyword argument"),
    (lambda: SpatialDropout2D(0.5)(Input(shape=(6, 3))), ValueError,
     r"SpatialDropout2D takes images \(batch, height, width, channels\), got inputs of shape \(batch, 6, 3\)"),
])
def test_spatial_dropout_bad_arguments_are_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_spatial_dropout_get_config_round_trips():
    layer = SpatialDropout2D(0.2, data_format="channels_last", seed=3, name="sd", dtype="float64")
    cfg = layer.get_config()
    assert cfg == {"name": "sd", "dtype": "float64", "rate": 0.2, "seed": 3}
    assert SpatialDropout2D.from_config(cfg).get_config() == cfg
    assert npae.layers.deserialize(npae.layers.serialize(layer)).get_config() == cfg


def test_gaussian_noise_adds_noise_of_the_given_stddev_in_training():
    x = np.random.default_rng(2).normal(size=(400, 250))
    layer = GaussianNoise(0.5, seed=9, dtype="float64")
    out, cache = layer.forward(x, training=True)
    e = out - x
    assert abs(e.mean()) < 0.005 and abs(e.std() - 0.5) < 0.005  # 100,000 draws
    dx, grads = layer.backward(np.full_like(x, 3.0), cache)
    np.testing.assert_array_equal(dx, np.full_like(x, 3.0))
    assert grads == {}
    y, _ = noise.gaussian_noise_forward(np.array([1.0, 2.0]), np.array([0.5, -0.25]))
    np.testing.assert_array_equal(y, [1.5, 1.75])
    assert GaussianNoise(0.5, seed=0).forward(x.astype(np.float32), training=True)[0].dtype == np.float32


def test_gaussian_noise_gradcheck_with_a_fixed_seed():
    passes(GaussianNoise(0.8, seed=3), (3, 2, 2))


def test_gradcheck_gives_every_forward_pass_the_same_draw():
    # without restoring the generator before each pass, the finite differences would compare two
    # different masks; the original layer's generator is left alone (the check runs on a copy)
    layer = Dropout(0.5, seed=0)
    state = copy.deepcopy(layer.rng.bit_generator.state)
    report = gradcheck.check_layer(layer, input_shape=(10,), batch_size=4, raise_on_failure=False)
    assert report.passed, report.table()
    assert layer.rng.bit_generator.state == state


@pytest.mark.parametrize("make,error,match", [
    (lambda: Dropout(1.0), ValueError, r"rate must be a finite number in \[0, 1\)"),
    (lambda: Dropout(-0.1), ValueError, "rate"),
    (lambda: Dropout("0.5"), ValueError, "rate"),
    (lambda: Dropout(float("nan")), ValueError, "rate"),
    (lambda: Dropout(0.5, noise_shape="abc"), ValueError, "noise_shape must be a tuple"),
    (lambda: Dropout(0.5, noise_shape=(None, 0)), ValueError, "noise_shape entries must be positive"),
    (lambda: Dropout(0.5, noise_shape=(None, 1.5)), ValueError, "noise_shape entries"),
    (lambda: Dropout(0.5, seed=-1), ValueError, "seed must be a non-negative int"),
    (lambda: Dropout(0.5, seed=1.5), ValueError, "seed"),
    (lambda: Dropout(0.5, bogus=1), TypeError, "unexpected keyword argument 'bogus'"),
    (lambda: GaussianNoise(-0.1), ValueError, r"stddev must be a finite number in \[0, inf\]"),
    (lambda: GaussianNoise(float("inf")), ValueError, "stddev"),
    (lambda: GaussianNoise(None), ValueError, "stddev"),
    (lambda: GaussianNoise(0.1, seed="a"), ValueError, "seed"),
])
def test_noise_layers_bad_arguments_are_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_noise_layers_get_config_round_trips():
    for layer in (Dropout(0.3, noise_shape=[None, 1, 4], seed=2, name="drop_a"), Dropout(0.1),
                  GaussianNoise(0.25, seed=5, dtype="float64")):
        cfg = layer.get_config()
        again = type(layer).from_config(cfg)
        assert again.get_config() == cfg
    assert Dropout(0.3, noise_shape=(None, 1, 4), seed=2).get_config()["noise_shape"] == [None, 1, 4]
    a = Dropout.from_config(Dropout(0.5, seed=3).get_config())
    np.testing.assert_array_equal(a.forward(np.ones((3, 4)), training=True)[0],
                                  Dropout(0.5, seed=3).forward(np.ones((3, 4)), training=True)[0])


# -- in a model, on both paths -----------------------------------------------------------------------

def conv_bn_model(seed=0):
    npae.set_random_seed(seed)
    inp = Input(shape=(5, 5, 2))
    h = Conv2D(3, 3, padding="same", activation="relu")(inp)
    h = BatchNormalization(name="bn_channels")(h)
    h = Conv2D(2, 3, padding="same")(h)
    h = BatchNormalization(axis=1, center=False, momentum=0.9, name="bn_rows")(h)
    return Model(inp, Conv2D(1, 3, padding="same", activation="sigmoid")(h))


def dense_bn_dropout_model(seed=0):
    npae.set_random_seed(seed)
    inp = Input(shape=(8,))
    h = Dense(6, activation="relu")(inp)
    h = BatchNormalization(name="bn_dense")(h)
    h = Dropout(0.3, seed=seed, name="drop")(h)
    h = GaussianNoise(0.1, seed=seed + 1, name="noise")(h)
    return Model(inp, Dense(8, activation="sigmoid")(h))


def data(shape, n=6, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 0.95, (n, *shape))


@pytest.mark.parametrize("build,loss", [(conv_bn_model, "mse"), (dense_bn_dropout_model, "binary_crossentropy")])
def test_both_paths_give_the_same_gradients_in_float64(build, loss):
    fast = build()
    ref = copy.deepcopy(fast)  # the same weights, the same noise generators
    fast.compile("adam", loss)
    ref.compile("adam", loss, jit_compile=False)
    fast.astype("float64")
    ref.astype("float64")
    x = data(fast.input_shape[1:])
    y = data(fast.output_shape[1:], seed=1)
    lf, lr = fast.compute_gradients(x, y), ref.compute_gradients(x, y)
    assert abs(lf - lr) <= 1e-10 * abs(lr)
    gf, gr = fast.gradients(), ref.gradients()
    assert gf.keys() == gr.keys() and not any("moving" in k for k in gf)
    for k in gf:
        np.testing.assert_allclose(gf[k], gr[k], rtol=1e-10, atol=1e-10, err_msg=k)
        assert np.any(gf[k] != 0), k
    for a, b in zip(fast.get_weights(), ref.get_weights()):  # the moving statistics moved alike
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for k in ("moving_mean", "moving_variance"):
        layer = fast.layers[2]
        assert not np.allclose(layer.params[k], {"moving_mean": 0.0, "moving_variance": 1.0}[k]), k
    pf, pr = fast.predict(x), ref.predict(x)
    np.testing.assert_allclose(pf, pr, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("build,loss", [(conv_bn_model, "mse"), (dense_bn_dropout_model, "binary_crossentropy")])
def test_model_full_gradcheck_with_batchnorm_and_noise(build, loss, jit):
    model = build(seed=2)
    model.compile("sgd", loss)
    x, y = data(model.input_shape[1:], n=4, seed=3), data(model.output_shape[1:], n=4, seed=4)
    report = npae.check_model(model, x, y, mode="full", jit_compile=jit)
    assert report.passed, report.table()
    names = [c.name for c in report.checks]
    assert not any("moving" in n for n in names)
    assert any(n.endswith("/gamma") for n in names) and any(n.endswith("/beta") for n in names)
    assert sum(c.checked for c in report.checks) > 60


def conv_spatial_dropout_model(seed=0):
    npae.set_random_seed(seed)
    inp = Input(shape=(5, 5, 2))
    h = Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = SpatialDropout2D(0.5, seed=seed, name="spatial")(h)
    return Model(inp, Conv2D(1, 3, padding="same", activation="sigmoid")(h))


def test_spatial_dropout_in_a_model_gives_both_paths_the_same_numbers():
    fast = conv_spatial_dropout_model()
    ref = copy.deepcopy(fast)  # the same weights, the same generator
    for model, jit in ((fast, True), (ref, False)):
        model.compile("adam", "binary_crossentropy", jit_compile=jit)
        model.astype("float64")
    x, y = data((5, 5, 2)), data((5, 5, 1), seed=1)
    lf, lr = fast.compute_gradients(x, y), ref.compute_gradients(x, y)
    assert abs(lf - lr) <= 1e-10 * abs(lr)
    for k, g in ref.gradients().items():
        np.testing.assert_allclose(fast.gradients()[k], g, rtol=1e-10, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(fast.predict(x), ref.predict(x), rtol=1e-10, atol=1e-12)
    assert fast.evaluate(x, y) == pytest.approx(ref.evaluate(x, y), rel=1e-10)
    for model in (fast, ref):
        model.fit(x, y, epochs=2, batch_size=3, verbose=0, seed=0)
    for a, b in zip(fast.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("jit", [False, True])
def test_model_full_gradcheck_with_spatial_dropout(jit):
    model = conv_spatial_dropout_model(seed=2)
    model.compile("sgd", "mse")
    x, y = data((5, 5, 2), n=4, seed=3), data((5, 5, 1), n=4, seed=4)
    report = npae.check_model(model, x, y, mode="full", jit_compile=jit)
    assert report.passed, report.table()


@pytest.mark.parametrize("jit", [False, True])
def test_fit_trains_and_moves_the_statistics_evaluate_and_predict_do_not(jit):
    model = dense_bn_dropout_model(seed=3)
    model.compile("adam", "mse", jit_compile=jit)
    x = data((8,), n=64, seed=5).astype(np.float32)
    bn_layer = model.get_layer("bn_dense")
    stats = [bn_layer.params[k].copy() for k in ("moving_mean", "moving_variance")]
    h = model.fit(x, x, epochs=15, batch_size=16, verbose=0, seed=0)
    assert h.history["loss"][-1] < 0.8 * h.history["loss"][0]
    moved = [bn_layer.params[k].copy() for k in ("moving_mean", "moving_variance")]
    assert all(not np.allclose(a, b) for a, b in zip(stats, moved))
    all_weights = model.get_weights()
    model.evaluate(x, x, batch_size=16)
    p1 = model.predict(x)
    p2 = model.predict(x)
    np.testing.assert_array_equal(p1, p2)  # no noise at inference
    for a, b in zip(all_weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_trainable_weights_exclude_the_moving_statistics(capsys):
    model = conv_bn_model()
    bn_c, bn_r = model.get_layer("bn_channels"), model.get_layer("bn_rows")
    trainable = model.trainable_weights
    assert any(w is bn_c.params["gamma"] for w in trainable)
    for layer in (bn_c, bn_r):
        for k in ("moving_mean", "moving_variance"):
            assert not any(w is layer.params[k] for w in trainable)
            assert any(w is layer.params[k] for w in model.non_trainable_weights)
    assert len(model.non_trainable_weights) == 4 and len(model.weights) == len(trainable) + 4
    model.compile("sgd", "mse")
    assert set(model.gradients()) == {k for k in model.parameters() if "moving" not in k}
    model.summary()
    out = capsys.readouterr().out
    assert "Non-trainable params: 16" in out  # 2 * 3 channels + 2 * 5 rows


def test_model_get_set_weights_in_keras_order():
    model = conv_bn_model()
    shapes = [w.shape for w in model.get_weights()]
    # conv (3,3,2,3)+(3,), bn: gamma, beta, moving_mean, moving_variance (3,) each, conv (3,3,3,2)+(2,),
    # bn without center over rows: gamma, moving_mean, moving_variance (5,), conv (3,3,2,1)+(1,)
    assert shapes == [(3, 3, 2, 3), (3,), (3,), (3,), (3,), (3,), (3, 3, 3, 2), (2,), (5,), (5,), (5,),
                      (3, 3, 2, 1), (1,)]
    new = [np.full(s, i + 1.0, np.float32) for i, s in enumerate(shapes)]
    model.set_weights(new)
    bn_c, bn_r = model.get_layer("bn_channels"), model.get_layer("bn_rows")
    assert [float(w[0]) for w in bn_c.get_weights()] == [3.0, 4.0, 5.0, 6.0]
    assert [float(w[0]) for w in bn_r.get_weights()] == [9.0, 10.0, 11.0]


def test_a_fixed_seed_reproduces_a_training_run_with_noise():
    def run():
        model = dense_bn_dropout_model(seed=4)
        model.compile("adam", "mse")
        x = data((8,), n=32, seed=6).astype(np.float32)
        h = model.fit(x, x, epochs=3, batch_size=8, verbose=0, seed=1)
        return model.get_weights(), h.history["loss"]

    (w1, l1), (w2, l2) = run(), run()
    assert l1 == l2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


def test_save_and_load_keep_the_moving_statistics(tmp_path):
    model = dense_bn_dropout_model(seed=5)
    model.compile("adam", "mse")
    x = data((8,), n=32, seed=7).astype(np.float32)
    model.fit(x, x, epochs=2, batch_size=8, verbose=0, seed=0)
    model.save(tmp_path / "m.npz")
    classes = {"BatchNormalization": BatchNormalization, "Dropout": Dropout, "GaussianNoise": GaussianNoise}
    again = load_model(tmp_path / "m.npz", custom_objects=classes)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x), again.predict(x))
    assert again.get_layer("drop").get_config() == model.get_layer("drop").get_config()


def test_model_forward_in_training_and_inference():
    model = Model(inp := Input(shape=(3, 3, 2)), Flatten()(BatchNormalization(momentum=0.5)(inp)))
    x = data((3, 3, 2), n=5, seed=8)
    bn_layer = model.layers[1]
    out = model.forward(x, training=True)
    # training: each channel's 5 * 3 * 3 = 45 values have mean 0 and variance var / (var + eps)
    per_channel = out.reshape(5, 3, 3, 2).reshape(-1, 2)
    np.testing.assert_allclose(per_channel.mean(0), 0.0, atol=1e-6)
    var = x.reshape(-1, 2).var(0)
    np.testing.assert_allclose(per_channel.var(0), var / (var + EPS), rtol=1e-5)
    np.testing.assert_allclose(bn_layer.params["moving_mean"], 0.5 * x.reshape(-1, 2).mean(0), rtol=1e-6)
    # inference: (x - moving_mean) / sqrt(moving_variance + eps)
    mm, mv = bn_layer.params["moving_mean"], bn_layer.params["moving_variance"]
    np.testing.assert_allclose(model.predict(x), ((x - mm) / np.sqrt(mv + EPS)).reshape(5, -1), rtol=1e-5,
                               atol=1e-6)
