"""The reference operations (npae.functional) against independent definitions: plain loops over
every index for the forward passes, central differences for the backward passes, in float64,
over seeded random shapes."""

import numpy as np
import pytest

from npae.functional import activations, conv, dense, losses, noise, optimizers, pool, regularizers, upsample


def numeric_grad(f, x, eps=1e-6):
    """d f / d x by central differences, element by element (x modified in place, restored)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        plus = f()
        x[i] = saved - eps
        minus = f()
        x[i] = saved
        g[i] = (plus - minus) / (2 * eps)
    return g


def random_windows(rng, n_cases):
    for _ in range(n_cases):
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        padding = str(rng.choice(["valid", "same"]))
        h, w = int(rng.integers(kh, kh + 6)), int(rng.integers(kw, kw + 6))
        yield (kh, kw), (sh, sw), padding, (int(rng.integers(1, 4)), h, w, int(rng.integers(1, 4)))


def test_output_size_rules():
    assert conv.output_size(28, 3, 1, "same") == (28, 1, 1)
    assert conv.output_size(16, 3, 1, "valid") == (14, 0, 0)
    assert conv.output_size(7, 2, 2, "same") == (4, 0, 1)
    assert conv.output_size(6, 4, 1, "same") == (6, 1, 2)  # odd total pad: the extra one after
    assert conv.output_size(9, 3, 2, "valid") == (4, 0, 0)
    with pytest.raises(ValueError, match="expected an input of at least 5, got 4"):
        conv.output_size(4, 5, 1, "valid")
    with pytest.raises(ValueError, match="padding must be"):
        conv.output_size(4, 2, 1, "full")


def test_dense_forward_is_the_sum_and_backward_the_derivative():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    z, cache = dense.forward(x, w, b)
    want = np.array([[sum(x[n, d] * w[d, u] for d in range(4)) + b[u] for u in range(5)] for n in range(3)])
    np.testing.assert_allclose(z, want, rtol=1e-12)
    u = rng.standard_normal(z.shape)
    dx, dw, db = dense.backward(u, cache)
    for arr, grad in ((x, dx), (w, dw), (b, db)):
        np.testing.assert_allclose(grad, numeric_grad(lambda: np.sum(u * dense.forward(x, w, b)[0]), arr), rtol=1e-6,
                                   atol=1e-8)


def naive_conv(x, k, b, strides, padding):
    """z[n, i, j, o] = b[o] + sum x[n, i*sh - pt + a, j*sw - pl + c, ch] k[a, c, ch, o], out-of-image taps 0."""
    n, h, w, cin = x.shape
    kh, kw, _, cout = k.shape
    ho, pt, _ = conv.output_size(h, kh, strides[0], padding)
    wo, pl, _ = conv.output_size(w, kw, strides[1], padding)
    z = np.zeros((n, ho, wo, cout))
    for bi, i, j, o in np.ndindex(n, ho, wo, cout):
        s = b[o]
        for a, c, ch in np.ndindex(kh, kw, cin):
            y, xx = i * strides[0] - pt + a, j * strides[1] - pl + c
            if 0 <= y < h and 0 <= xx < w:
                s += x[bi, y, xx, ch] * k[a, c, ch, o]
        z[bi, i, j, o] = s
    return z


def test_conv_forward_equals_the_definition_for_any_stride_padding_and_kernel():
    rng = np.random.default_rng(1)
    for ksize, strides, padding, shape in random_windows(rng, 25):
        x = rng.standard_normal(shape)
        k = rng.standard_normal((*ksize, shape[3], int(rng.integers(1, 4))))
        b = rng.standard_normal(k.shape[3])
        z, _ = conv.forward(x, k, b, strides, padding)
        np.testing.assert_allclose(z, naive_conv(x, k, b, strides, padding), rtol=1e-12, atol=1e-12,
                                   err_msg=f"{ksize} {strides} {padding} {shape}")


def test_conv_backward_is_the_derivative():
    rng = np.random.default_rng(2)
    for ksize, strides, padding, shape in random_windows(rng, 10):
        x = rng.standard_normal(shape)
        k = rng.standard_normal((*ksize, shape[3], 2))
        b = rng.standard_normal(2)
        z, cache = conv.forward(x, k, b, strides, padding)
        u = rng.standard_normal(z.shape)
        dx, dk, db = conv.backward(u, cache)

        def f(x=x, k=k, b=b, u=u, strides=strides, padding=padding):
            return np.sum(u * conv.forward(x, k, b, strides, padding)[0])

        for arr, grad in ((x, dx), (k, dk), (b, db)):
            np.testing.assert_allclose(grad, numeric_grad(f, arr), rtol=1e-5, atol=1e-7,
                                       err_msg=f"{ksize} {strides} {padding} {shape}")


def test_col2im_is_the_adjoint_of_im2col():
    rng = np.random.default_rng(3)
    xp = rng.standard_normal((2, 7, 6, 3))
    cols = conv.im2col(xp, 3, 2, 2, 1, 3, 5)
    g = rng.standard_normal(cols.shape)
    assert np.isclose(np.sum(cols * g), np.sum(xp * conv.col2im(g, xp.shape, 3, 2, 2, 1, 3, 5)))


def naive_maxpool(x, size, strides, padding):
    n, h, w, c = x.shape
    ho, pt, _ = conv.output_size(h, size[0], strides[0], padding)
    wo, pl, _ = conv.output_size(w, size[1], strides[1], padding)
    out = np.full((n, ho, wo, c), -np.inf)
    for b, i, j, ch in np.ndindex(n, ho, wo, c):
        for a, d in np.ndindex(*size):
            y, xx = i * strides[0] - pt + a, j * strides[1] - pl + d
            if 0 <= y < h and 0 <= xx < w:
                out[b, i, j, ch] = max(out[b, i, j, ch], x[b, y, xx, ch])
    return out


def test_maxpool_forward_and_backward():
    rng = np.random.default_rng(4)
    for size, strides, padding, shape in random_windows(rng, 20):
        x = rng.standard_normal(shape)
        out, cache = pool.forward(x, size, strides, padding)
        np.testing.assert_array_equal(out, naive_maxpool(x, size, strides, padding))
        u = rng.standard_normal(out.shape)
        dx = pool.backward(u, cache)
        def f(x=x, u=u, size=size, strides=strides, padding=padding):
            return np.sum(u * pool.forward(x, size, strides, padding)[0])

        np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-6, atol=1e-8)


def test_maxpool_ties_go_to_the_first_and_overlapping_winners_sum():
    x = np.zeros((1, 2, 3, 1))
    x[0, 0, 1, 0] = 5.0  # wins both overlapping 2x2 windows (stride 1)
    out, cache = pool.forward(x, (2, 2), (1, 1), "valid")
    dx = pool.backward(np.ones_like(out), cache)
    assert dx[0, 0, 1, 0] == 2.0 and dx.sum() == 2.0
    flat = np.zeros((1, 2, 2, 1))  # a tie everywhere: the first in row-major order wins
    _, cache = pool.forward(flat, (2, 2), None, "valid")
    assert pool.backward(np.ones((1, 1, 1, 1)), cache)[0, 0, 0, 0] == 1.0


def test_maxpool_same_padding_never_wins():
    x = -np.ones((1, 3, 3, 1))
    out, _ = pool.forward(x, (2, 2), (2, 2), "same")
    np.testing.assert_array_equal(out, -np.ones((1, 2, 2, 1)))


def test_upsample_forward_and_its_adjoint():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4, 2))
    out, cache = upsample.forward(x, (2, 3))
    assert out.shape == (2, 6, 12, 2)
    for b, y, xx, c in np.ndindex(out.shape):
        assert out[b, y, xx, c] == x[b, y // 2, xx // 3, c]
    g = rng.standard_normal(out.shape)
    assert np.isclose(np.sum(out * g), np.sum(x * upsample.backward(g, cache)))


@pytest.mark.parametrize("name", activations.NAMES)
def test_activations_forward_and_backward(name):
    rng = np.random.default_rng(6)
    z = rng.standard_normal((4, 5)) * 3
    z[np.abs(z) < 1e-3] = 0.5  # away from relu's kink
    a, cache = activations.forward(z, name, alpha=0.2 if name == "leaky_relu" else 1.0)
    want = {"linear": z, "relu": np.maximum(z, 0), "sigmoid": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z),
            "leaky_relu": np.where(z > 0, z, 0.2 * z), "elu": np.where(z > 0, z, np.exp(z) - 1),
            "softplus": np.log1p(np.exp(z)), "silu": z / (1 + np.exp(-z)),
            "softmax": np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)}[name]
    np.testing.assert_allclose(a, want, rtol=1e-12, atol=1e-15)
    u = rng.standard_normal(z.shape)
    dz = activations.backward(u, cache)
    alpha = 0.2 if name == "leaky_relu" else 1.0
    np.testing.assert_allclose(dz, numeric_grad(lambda: np.sum(u * activations.forward(z, name, alpha)[0]), z),
                               rtol=1e-6, atol=1e-8)


def test_sigmoid_and_softplus_never_overflow():
    import warnings

    z = np.array([-1000.0, 1000.0, 0.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(activations.forward(z, "sigmoid")[0], [0.0, 1.0, 0.5])
        np.testing.assert_allclose(activations.forward(z, "softplus")[0], [0.0, 1000.0, np.log(2)], rtol=1e-6)


def test_softmax_never_overflows_and_its_rows_sum_to_one():
    import warnings

    z = np.array([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -1000.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, cache = activations.forward(z, "softmax")
        np.testing.assert_allclose(a, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
        np.testing.assert_allclose(activations.log_softmax(z.astype(np.float64))[0], [0.0, -1000.0, -2000.0])
        assert np.isfinite(activations.backward(np.ones_like(z), cache)).all()
    rng = np.random.default_rng(8)
    z = rng.standard_normal((2, 3, 4, 5))  # (softmax over the last axis of any shape)
    a = activations.apply("softmax", z)
    np.testing.assert_allclose(a.sum(axis=-1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(a, activations.softmax(z + 7.5), rtol=1e-12)  # (the same for any shift of a row)
    u = rng.standard_normal(z.shape)
    dz = activations.backward(u, activations.forward(z, "softmax")[1])
    np.testing.assert_allclose(dz.sum(axis=-1), 0.0, atol=1e-14)  # (a shift of a row changes nothing)
    np.testing.assert_allclose(dz, numeric_grad(lambda: np.sum(u * activations.softmax(z)), z), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="at least one axis"):
        activations.forward(np.float64(1.0), "softmax")


def test_apply_is_the_forward_pass_without_its_cache():
    z = np.random.default_rng(9).standard_normal((3, 4))
    for name in ("sigmoid", "softmax", "relu"):
        np.testing.assert_array_equal(activations.apply(name, z), activations.forward(z, name)[0])


@pytest.mark.parametrize("name", ["mse", "mae", "bce", "sigmoid_bce"])
def test_losses_values_and_gradients(name):
    rng = np.random.default_rng(7)
    y = rng.uniform(0.05, 0.95, (3, 4)) if name != "sigmoid_bce" else rng.standard_normal((3, 4)) * 2
    t = rng.uniform(0, 1, (3, 4))
    fwd, bwd = getattr(losses, f"{name}_forward"), getattr(losses, f"{name}_backward")
    value, cache = fwd(y, t)
    p = 1 / (1 + np.exp(-y)) if name == "sigmoid_bce" else y
    formulas = {"mse": lambda: np.mean((y - t) ** 2), "mae": lambda: np.mean(np.abs(y - t)),
                "bce": lambda: -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))}
    want = formulas["bce" if name == "sigmoid_bce" else name]()
    assert np.isclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(bwd(cache), numeric_grad(lambda: fwd(y, t)[0], y), rtol=1e-6, atol=1e-9)


def test_bce_clips_probabilities_and_passes_no_gradient_outside():
    y = np.array([[0.0, 1.0, 0.5]])
    value, cache = losses.bce_forward(y, np.array([[1.0, 0.0, 1.0]]))
    assert np.isfinite(value)
    assert np.all(losses.bce_backward(cache)[0, :2] == 0)


def naive_cce(y, t, from_logits):
    """Keras's categorical cross-entropy, a row (the last axis) at a time: the mean over rows of
    -sum t log p, p = softmax(z), or y / sum(y) clipped to [1e-7, 1 - 1e-7]."""
    rows_y, rows_t, total = y.reshape(-1, y.shape[-1]), t.reshape(-1, t.shape[-1]), 0.0
    for yr, tr in zip(rows_y, rows_t):
        p = np.exp(yr) / np.sum(np.exp(yr)) if from_logits else np.clip(yr / np.sum(yr), 1e-7, 1 - 1e-7)
        total += -sum(tc * np.log(pc) for tc, pc in zip(tr, p))
    return total / len(rows_y)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 3, 4), (3, 1)])
def test_categorical_crossentropy_value_and_gradient(shape, from_logits):
    rng = np.random.default_rng(10)
    # unnormalised probabilities (each row divided by its sum), or logits; one-hot and soft targets
    y = rng.standard_normal(shape) * 3 if from_logits else rng.uniform(0.05, 0.95, shape)
    t = np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]
    t[0] = rng.dirichlet(np.ones(shape[-1]), size=shape[1:-1]) if len(shape) > 2 else rng.dirichlet(np.ones(shape[-1]))
    fwd, bwd = (losses.softmax_cce_forward, losses.softmax_cce_backward) if from_logits else \
        (losses.cce_forward, losses.cce_backward)
    value, cache = fwd(y, t)
    assert np.isclose(value, naive_cce(y, t, from_logits), rtol=1e-12)
    np.testing.assert_allclose(bwd(cache), numeric_grad(lambda: fwd(y, t)[0], y), rtol=1e-6, atol=1e-9)


def test_categorical_crossentropy_clips_and_passes_no_gradient_outside():
    y = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    value, cache = losses.cce_forward(y, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert np.isclose(value, -np.log(1e-7))  # each row's target class has p = 0: clipped to 1e-7
    g = losses.cce_backward(cache)
    assert np.isfinite(g).all() and g[0, 0] == 0 and g[1, 1] == 0  # (the clipped entries pass nothing)
    big = np.array([[1000.0, -1000.0, 0.0]])  # the logits form never overflows
    value, cache = losses.softmax_cce_forward(big, np.array([[0.0, 1.0, 0.0]]))
    assert np.isclose(value, 2000.0)
    np.testing.assert_allclose(losses.softmax_cce_backward(cache), [[1.0, -1.0, 0.0]], atol=1e-300)


def test_spatial_dropout_shares_each_images_channel_mask_over_its_pixels():
    rng = np.random.default_rng(11)
    x, keep = rng.standard_normal((2, 3, 4, 5)), rng.random((2, 5)) >= 0.4
    y, cache = noise.spatial_dropout2d_forward(x, keep, 0.4)
    for n, i, j, c in np.ndindex(x.shape):
        assert y[n, i, j, c] == (x[n, i, j, c] / 0.6 if keep[n, c] else 0.0)
    u = rng.standard_normal(x.shape)
    np.testing.assert_allclose(noise.spatial_dropout2d_backward(u, cache),
                               numeric_grad(lambda: np.sum(u * noise.spatial_dropout2d_forward(x, keep, 0.4)[0]), x),
                               rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match=r"x \(N, H, W, C\) and a mask keep \(N, C\), got x \(2, 3, 4, 5\) and keep "
                                         r"\(2, 4\)"):
        noise.spatial_dropout2d_forward(x, keep[:, :4], 0.4)


def test_loss_shapes_must_match():
    with pytest.raises(ValueError, match=r"same shape, got \(4, 3\) and \(4, 1\)"):
        losses.mse_forward(np.zeros((4, 3)), np.zeros((4, 1)))


def test_activity_penalties_per_sample():
    h = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert np.isclose(regularizers.l1_forward(h, 0.1), 0.1 * 3.5 / 2)
    np.testing.assert_allclose(regularizers.l1_backward(h, 0.1), 0.1 / 2 * np.sign(h))
    assert np.isclose(regularizers.l2_forward(h, 0.1), 0.1 * 5.25 / 2)
    np.testing.assert_allclose(regularizers.l2_backward(h, 0.1), 2 * 0.1 / 2 * h)


def test_optimizer_updates_by_hand():
    # one step of each from p = 1, g = 0.5, worked out by hand from the update forms
    p, g = np.array([1.0]), np.array([0.5])
    optimizers.sgd_update(p, g, 0.1)
    assert np.isclose(p[0], 0.95)
    p, v = np.array([1.0]), np.array([0.2])
    optimizers.sgd_update(p, g, 0.1, momentum=0.9, nesterov=True, velocity=v)
    assert np.isclose(v[0], 0.9 * 0.2 - 0.05) and np.isclose(p[0], 1 + 0.9 * v[0] - 0.05)
    p, s = np.array([1.0]), np.array([0.0])
    optimizers.rmsprop_update(p, g, s, 0.01, 0.9, 1e-7)
    assert np.isclose(s[0], 0.1 * 0.25) and np.isclose(p[0], 1 - 0.01 * 0.5 / np.sqrt(0.025 + 1e-7))
    p, m, v = np.array([1.0]), np.array([0.0]), np.array([0.0])
    optimizers.adam_update(p, g, m, v, 0.1, 0.9, 0.999, 1e-7)
    assert np.isclose(m[0], 0.05) and np.isclose(v[0], 0.00025)
    assert np.isclose(p[0], 1 - 0.1 * 0.05 / (np.sqrt(0.00025) + 1e-7))
    p, ag, ad = np.array([1.0]), np.array([0.0]), np.array([0.0])
    optimizers.adadelta_update(p, g, ag, ad, 1.0, 0.95, 1e-7)
    d = np.sqrt(1e-7) / np.sqrt(0.05 * 0.25 + 1e-7) * 0.5
    assert np.isclose(ag[0], 0.0125) and np.isclose(p[0], 1 - d) and np.isclose(ad[0], 0.05 * d * d)


def test_reference_path_imports_no_numba():
    import subprocess
    import sys

    code = ("import sys, numpy as np, npae, npae.layers\n"
            "from npae import autoencoders\n"
            "ae = autoencoders.convolutional(filters=(2, 2, 2), seed=0)[0]\n"
            "ae.compile(optimizer='adadelta', loss='binary_crossentropy', jit_compile=False)\n"
            "x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)\n"
            "ae.fit(x, x, epochs=1, batch_size=4, verbose=0); ae.predict(x, verbose=0); ae.evaluate(x, x, verbose=0)\n"
            "print('numba' in sys.modules, 'llvmlite' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr
