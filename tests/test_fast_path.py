"""The fast path (npae.fast) gives the reference path's numbers: each step against the reference
passes of the layers it replaces, every plan against the whole reference path, in float64 (within
1e-10) and float32 (within a few ulps of the largest value); and the policy, the planner's rewrite
rules, the workspaces and the state per call."""

import threading

import numpy as np
import pytest

import npae
from npae import autoencoders
from npae.fast import FastPath, memory, planner, policy
from npae.fast.policy import ConvAlgo
from npae.fast.steps import ConvStep, DenseStep, PoolStep, ReferenceStep
from npae.layers import Activation, Conv2D, Dense, Flatten, Input, Layer, MaxPooling2D, Reshape, UpSampling2D
from npae.layers.base import param_key
from npae.models import Model, Sequential

DTYPES = [np.float64, np.float32]


def assert_close(got, want, dtype, what=""):
    """float64: within 1e-10 (relative to the largest value); float32: within 16 ulps of the largest
    value (sums of hundreds of products, added in another order)."""
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    atol = 1e-10 * scale if dtype == np.float64 else 16 * np.finfo(np.float32).eps * scale
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=what)


def reference(layers, x, g):
    """Forward through ``layers`` one by one, then backward from g: (out, dx, grads by key)."""
    caches, h = [], x
    for layer in layers:
        h, cache = layer.forward(h, training=True)
        caches.append(cache)
    grads = {}
    for layer, cache in zip(reversed(layers), reversed(caches)):
        g, gs = layer.backward(g, cache)
        for k, v in gs.items():
            key = param_key(layer, k)
            grads[key] = grads[key] + v if key in grads else v
    return h, g, grads


def run_step(step, x, g):
    """One step's forward and backward in a fresh workspace: (out, dx, grads by key)."""
    ws = memory.Workspace()
    grads = {param_key(layer, k): np.full_like(v, np.nan) for layer in {step.layer, getattr(step, "pool", None)}
             if layer is not None for k, v in layer.params.items()}
    out, saved = step.forward(np.ascontiguousarray(x), ws, None)
    out = out.copy()
    dx = step.backward(g.copy(), saved, ws, grads)
    return out, dx, grads


def built(layer, shape, dtype, seed=0):
    layer.build(shape, np.random.default_rng(seed))
    layer.astype(dtype)
    for k in layer.params:
        if k == "bias":  # non-zero biases, so a missing bias term would show
            layer.params[k][...] = np.linspace(-0.5, 0.5, layer.params[k].size)
    return layer


CONV_CASES = [  # (image, cin, cout, kernel, padding, strides, activation)
    ((9, 8), 5, 2, 3, "same", 1, "relu"), ((9, 8), 1, 4, 3, "same", 1, "sigmoid"),
    ((7, 6), 3, 4, (2, 3), "valid", 1, "linear"),
    ((8, 10), 12, 16, 3, "same", 1, "relu"), ((7, 7), 8, 8, 3, "same", 1, "relu"), ((9, 9), 3, 2, 5, "same", 2, "relu"),
    ((6, 7), 4, 3, 3, "same", 1, "tanh"), ((6, 5), 4, 5, 3, "same", 1, "softmax"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algo", list(ConvAlgo))
@pytest.mark.parametrize("case", CONV_CASES)
def test_each_convolution_algorithm_gives_the_reference_numbers(case, algo, dtype):
    (h, w), cin, cout, kernel, padding, strides, act = case
    if algo in (ConvAlgo.DIRECT, ConvAlgo.WINOGRAD) and strides != 1:
        return  # (stride-1 algorithms: the policy never picks them here)
    if algo is ConvAlgo.WINOGRAD and (kernel != 3 or npae.fast.blas.find() is None):
        return
    layer = built(Conv2D(cout, kernel, strides=strides, padding=padding, activation=act), (h, w, cin), dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, h, w, cin)).astype(dtype)
    g = rng.standard_normal((5, *layer.output_shape)).astype(dtype)
    want = reference([layer], x, g)
    for block_bytes in (policy.PATCH_BLOCK_BYTES, 1, 3000):  # one block, one image per block, uneven blocks
        got = run_step(ConvStep(layer, algo=algo, block_bytes=block_bytes), x, g)
        for a, b, what in zip(got, want, ("output", "input gradient")):
            assert_close(a, b, dtype, what)
        for k in want[2]:
            assert_close(got[2][k], want[2][k], dtype, k)
        if algo not in (ConvAlgo.IM2COL, ConvAlgo.GEMM_KERNEL):
            break


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algo", list(ConvAlgo))
@pytest.mark.parametrize("up,kernel,padding,cin,cout", [((2, 2), 3, "same", 3, 4), ((2, 2), 3, "valid", 3, 4),
                                                        ((1, 3), (2, 3), "same", 2, 3), ((3, 2), (3, 1), "valid", 3, 2),
                                                        ((2, 2), 3, "same", 16, 16)])
def test_reading_an_upsampled_input_equals_upsampling_first(up, kernel, padding, cin, cout, algo, dtype):
    if algo is ConvAlgo.WINOGRAD and (kernel != 3 or npae.fast.blas.find() is None):
        return
    small = (4, 3, cin)
    upsampling = built(UpSampling2D(up), small, dtype)
    conv = built(Conv2D(cout, kernel, padding=padding, activation="relu"), upsampling.output_shape, dtype)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, *small)).astype(dtype)
    g = rng.standard_normal((5, *conv.output_shape)).astype(dtype)
    want = reference([upsampling, conv], x, g)
    for block_bytes in (policy.PATCH_BLOCK_BYTES, 25000):
        got = run_step(ConvStep(conv, algo=algo, up=up, block_bytes=block_bytes), x, g)
        assert_close(got[0], want[0], dtype, "output")
        assert_close(got[1], want[1], dtype, "input gradient of the small image")
        for k in want[2]:
            assert_close(got[2][k], want[2][k], dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "linear"])
@pytest.mark.parametrize("cin,cout,algo", [(2, 3, ConvAlgo.DIRECT), (12, 16, ConvAlgo.WINOGRAD),
                                           (1, 4, ConvAlgo.DIRECT)])
def test_pooling_inside_the_convolution_equals_pooling_after(cin, cout, algo, activation, dtype):
    if algo is ConvAlgo.WINOGRAD and npae.fast.blas.find() is None:
        return
    conv = built(Conv2D(cout, 3, padding="same", activation=activation), (8, 10, cin), dtype)
    pool = built(MaxPooling2D(2), conv.output_shape, dtype)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 8, 10, cin)).astype(dtype)
    g = rng.standard_normal((5, *pool.output_shape)).astype(dtype)
    want = reference([conv, pool], x, g)
    got = run_step(ConvStep(conv, algo=algo, pool=pool), x, g)
    assert_close(got[0], want[0], dtype, "pooled output")
    assert_close(got[1], want[1], dtype, "input gradient")
    for k in want[2]:
        assert_close(got[2][k], want[2][k], dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool_size,strides,padding", [(2, None, "same"), (3, 2, "valid"), (2, 1, "valid")])
def test_pooling_through_a_relu_hands_the_layer_below_dz(pool_size, strides, padding, dtype):
    conv = built(Conv2D(4, 3, padding="same", activation="relu"), (7, 6, 3), dtype)
    pool = built(MaxPooling2D(pool_size, strides=strides, padding=padding), conv.output_shape, dtype)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 7, 6, 3)).astype(dtype)
    g = rng.standard_normal((3, *pool.output_shape)).astype(dtype)
    want = reference([conv, pool], x, g)
    steps = planner.pool_through_relu([ConvStep(conv, algo=ConvAlgo.IM2COL), PoolStep(pool)])
    assert steps[1].through_relu and steps[0].grad_is_dz
    ws, grads = memory.Workspace(), {param_key(conv, k): np.empty_like(v) for k, v in conv.params.items()}
    h, s0 = steps[0].forward(x, ws, None)
    out, s1 = steps[1].forward(h, ws, None)
    dx = steps[0].backward(steps[1].backward(g.copy(), s1, ws, grads), s0, ws, grads)
    assert_close(out, want[0], dtype)
    assert_close(dx, want[1], dtype)
    for k in want[2]:
        assert_close(grads[k], want[2][k], dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "linear", "elu", "softmax"])
def test_dense_and_activation_steps(activation, dtype):
    dense = built(Dense(5, activation=activation), (7,), dtype)
    act = built(Activation(activation), (5,), dtype)
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((6, 7)).astype(dtype), rng.standard_normal((6, 5)).astype(dtype)
    for layer, inp in ((dense, x), (act, rng.standard_normal((6, 5)).astype(dtype))):
        step = planner.steps_for([layer], False, True, True)[0]
        want, got = reference([layer], inp, g), run_step(step, inp, g)
        for a, b in zip(got[:2], want[:2]):
            assert_close(a, b, dtype)
        for k in want[2]:
            assert_close(got[2][k], want[2][k], dtype, k)


def test_backward_twice_gives_the_same_gradients():
    # the im2col step's backward rebuilds its patches from the kept input (the forward pass may
    # leave the last block's in the scratch memory, which the first backward overwrites)
    conv = built(Conv2D(8, 3, padding="same", activation="relu"), (7, 7, 8), np.float32)
    step = ConvStep(conv, algo=ConvAlgo.IM2COL, block_bytes=1)
    x = np.random.default_rng(4).random((3, 7, 7, 8), dtype=np.float32)
    g = np.random.default_rng(5).random((3, 7, 7, 8), dtype=np.float32)
    ws = memory.Workspace()
    grads = {param_key(conv, k): np.empty_like(v) for k, v in conv.params.items()}
    _, saved = step.forward(x, ws, None)
    first = step.backward(g.copy(), saved, ws, grads).copy(), grads[param_key(conv, "kernel")].copy()
    second = step.backward(g.copy(), saved, ws, grads), grads[param_key(conv, "kernel")]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


# -- whole models --------------------------------------------------------------------------------
def both_paths(name, dtype, seed=1):
    models = []
    for jit in (False, True):
        ae = autoencoders.BUILDERS[name](seed=seed)[0].astype(dtype)
        ae.compile(optimizer=ae.optimizer, loss=ae.loss, jit_compile=jit)
        models.append(ae)
    return models


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(autoencoders.BUILDERS))
def test_the_two_paths_agree_on_whole_models(name, dtype):
    ref, fast = both_paths(name, dtype)
    x = np.random.default_rng(0).uniform(0.05, 0.95, (5, *ref.input_shape[1:])).astype(dtype)
    y = np.clip(x + 0.1, 0, 1) if name == "denoising" else x
    values = [m.compute_gradients(x, y) for m in (ref, fast)]
    tol = 1e-10 if dtype == np.float64 else 1e-6
    assert values[1] == pytest.approx(values[0], rel=tol)
    for (k, a), b in zip(ref.gradients().items(), fast.gradients().values()):
        assert_close(b, a, dtype, k)
    assert_close(fast.predict(x, batch_size=2), ref.predict(x, batch_size=2), dtype, "predict")
    assert fast.evaluate(x, y, batch_size=3) == pytest.approx(ref.evaluate(x, y, batch_size=3), rel=tol)
    for m in (ref, fast):  # and a few steps of training on each path stay together
        m.fit(x, y, epochs=2, batch_size=2, verbose=0, seed=0)
    for a, b in zip(ref.get_weights(), fast.get_weights()):
        assert_close(b, a, dtype) if dtype == np.float64 else np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)


def test_the_plans_of_the_tutorials_models():
    conv = autoencoders.convolutional(seed=0)[0].path
    train = conv.plan("train").describe()
    assert train[:2] == ["ConvStep(conv2d, direct, pools (max_pooling2d))",
                         "ConvStep(conv2d_1, direct, pools (max_pooling2d_1))"] or "conv2d_" in train[0]
    assert any("through_relu" in s for s in train) and train[-1] == "LossStep(sigmoid_bce)"
    assert sum("reads 2x2 upsampled" in s for s in train) == 2 and sum(s.startswith("UpsampleStep") for s in train) == 1
    dense = autoencoders.deep(seed=0)[0].path
    assert [type(s).__name__ for s in dense.plan("predict").steps] == \
        (["DenseStackStep"] if npae.fast.blas.find() is not None else ["DenseStep"] * 6)
    assert [type(s).__name__ for s in dense.plan("train").steps] == ["DenseStep"] * 6
    steps = dense.plan("train").steps
    assert not steps[0].needs_dx and all(s.needs_dx for s in steps[1:])


def test_conv_algorithm_policy():
    pick = policy.conv_algorithm
    # the convolutional autoencoder's layers, training: (kernel, strides, cin, cout, out)
    assert pick((3, 3), (1, 1), 1, 16, (28, 28), True, True) is ConvAlgo.DIRECT  # one input channel
    assert pick((3, 3), (1, 1), 16, 8, (14, 14), True, True) is ConvAlgo.DIRECT  # fewer outputs than inputs
    assert pick((3, 3), (1, 1), 8, 8, (7, 7), True, True) is ConvAlgo.IM2COL  # small output: im2col trains
    assert pick((3, 3), (1, 1), 8, 8, (7, 7), False, True) is ConvAlgo.DIRECT  # ... but infers directly
    assert pick((3, 3), (1, 1), 8, 8, (8, 8), True, True) is ConvAlgo.DIRECT
    assert pick((3, 3), (1, 1), 32, 32, (14, 14), True, True) is ConvAlgo.WINOGRAD
    assert pick((3, 3), (1, 1), 32, 32, (14, 14), True, False) is ConvAlgo.IM2COL  # no OpenBLAS
    assert pick((5, 5), (1, 1), 32, 32, (14, 14), True, True) is ConvAlgo.GEMM_KERNEL
    assert pick((3, 3), (2, 2), 8, 8, (14, 14), True, True) is ConvAlgo.GEMM_KERNEL  # strided: a patch matrix
    assert policy.reads_upsampled(ConvAlgo.IM2COL, (1, 1), (4, 4))
    assert not policy.reads_upsampled(ConvAlgo.DIRECT, (1, 1), (4, 4))  # too small for the phase planes
    assert policy.reads_upsampled(ConvAlgo.DIRECT, (1, 1), (8, 8))
    assert not policy.reads_upsampled(ConvAlgo.IM2COL, (2, 2), (8, 8))


@pytest.mark.parametrize("args,fuses", [
    ((ConvAlgo.DIRECT, "relu", False, False, (28, 28), (2, 2), (2, 2)), True),  # the tutorial's first layer
    ((ConvAlgo.WINOGRAD, "sigmoid", False, False, (14, 14), (2, 2), (2, 2)), True),
    ((ConvAlgo.DIRECT, "relu", False, False, (7, 7), (2, 2), (2, 2)), False),  # odd size
    ((ConvAlgo.DIRECT, "relu", False, False, (8, 8), (3, 3), (3, 3)), False),  # window
    ((ConvAlgo.DIRECT, "relu", False, False, (8, 8), (2, 2), (1, 1)), False),  # stride
    ((ConvAlgo.DIRECT, "relu", True, False, (8, 8), (2, 2), (2, 2)), False),  # activity penalty
    ((ConvAlgo.DIRECT, "tanh", False, False, (8, 8), (2, 2), (2, 2)), False),  # not monotone-fusable
    ((ConvAlgo.IM2COL, "relu", False, False, (8, 8), (2, 2), (2, 2)), False),  # im2col
    ((ConvAlgo.DIRECT, "relu", False, True, (8, 8), (2, 2), (2, 2)), False),  # upsampled input
])
def test_pools_in_kernel_only_where_it_can(args, fuses):
    assert policy.pools_in_kernel(*args) is fuses


def test_a_layer_the_fast_path_does_not_know_runs_its_reference_passes():
    class Square(Layer):
        def forward(self, x, training=False):
            x = self._check_input(x)
            return x * x, x

        def backward(self, dout, cache):
            return 2 * cache * dout, {}

    inp = Input(shape=(3,))
    model = Model(inp, Dense(2)(Square()(Dense(3, activation="relu")(inp))))
    model.compile("adam", "mse")
    assert any(isinstance(s, ReferenceStep) for s in model.path.plan("train").steps)
    x = np.random.default_rng(0).random((4, 3))
    report = npae.check_model(model, x, x[:, :2], mode="full")
    assert report.passed, report.table()


def test_a_subclass_that_overrides_backward_is_not_run_on_the_fast_kernels():
    class Scaled(Dense):
        def backward(self, dout, cache):
            dx, grads = super().backward(dout, cache)
            return 2 * dx, grads

    steps = planner.steps_for([built(Scaled(3), (4,), np.float32), built(Dense(2), (3,), np.float32)], False, True,
                              True)
    assert isinstance(steps[0], ReferenceStep) and isinstance(steps[1], DenseStep)


@pytest.mark.parametrize("name", ["vanilla", "convolutional"])
def test_predict_and_evaluate_from_several_threads_match_sequential_calls(name):
    model = autoencoders.BUILDERS[name](seed=0)[0]
    rng = np.random.default_rng(0)
    inputs = [rng.random((37, *model.input_shape[1:]), dtype=np.float32) for _ in range(8)]
    want = [model.predict(x, batch_size=16) for x in inputs]
    want_loss = [model.evaluate(x, x, batch_size=16) for x in inputs]
    results, errors = {}, []

    def work(t):
        try:
            for rep in range(5):
                i = (t + rep) % len(inputs)
                results[(t, rep)] = (i, model.predict(inputs[i], batch_size=16), model.evaluate(inputs[i], inputs[i],
                                                                                               batch_size=16))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 20
    for i, pred, loss in results.values():
        np.testing.assert_array_equal(pred, want[i])
        assert loss == want_loss[i]


def test_workspaces_keep_two_gradient_arrays_and_reuse_them():
    ae = autoencoders.convolutional(seed=0)[0]
    x = np.random.default_rng(4).random((3, 28, 28, 1), dtype=np.float32)
    ae.compute_gradients(x, x)
    grads = [g.copy() for g in ae.gradients().values()]
    arrays = list(ae.path.workspace("train").gradients.arrays)
    # the largest two, in turn: the input gradients of the 16 -> 8 and 16 -> 1 convolutions; the
    # first and second convolutions pool in their kernels, so the 28x28x16 gradients are never formed
    assert sum(a.size for a in arrays) == 3 * (14 * 14 * 16 + 14 * 14 * 16)
    ae.compute_gradients(x, x)  # the same picks: no new arrays, and the same gradients
    assert [id(a) for a in ae.path.workspace("train").gradients.arrays] == [id(a) for a in arrays]
    for a, b in zip(grads, ae.gradients().values()):
        np.testing.assert_array_equal(a, b)
    ae.compute_gradients(x[:1], x[:1])  # a smaller last batch: no new arrays either
    assert [id(a) for a in ae.path.workspace("train").gradients.arrays] == [id(a) for a in arrays]
    # the im2col steps' patch blocks share one scratch array: the largest im2col layer's, 7x7 8 -> 8
    assert ae.path.workspace("train").scratch.array.size == 3 * 7 * 7 * (3 * 3 * 8)


def test_gradient_arrays_never_hand_out_the_busy_one():
    pool = memory.GradientArrays()
    a = pool.pick(100, np.float32, busy=np.zeros(1))
    b = pool.pick(100, np.float32, busy=a)  # a holds the gradient being read: never a
    assert b is not a and not np.may_share_memory(a, b)
    assert pool.pick(60, np.float32, busy=b[10:]) is a  # a view of b is b too
    assert pool.pick(40, np.float32, busy=np.zeros(1)) is a  # both free: the first, as every step
    grown = pool.pick(200, np.float32, busy=a)  # b is too small: it grows
    assert grown.size == 200 and pool.arrays[1] is grown
    assert pool.pick(10, np.float64, busy=grown).dtype == np.float64


def test_sequential_with_flatten_reshape_and_activation_layers_on_both_paths():
    def make(jit):
        npae.set_random_seed(3)
        m = Sequential([Input(shape=(6, 6, 1)), Conv2D(3, 3, activation="relu"), Flatten(), Dense(8),
                        Activation("relu"), Reshape((2, 4)), Flatten(), Dense(36, activation="sigmoid"),
                        Reshape((6, 6, 1))])
        m.compile("adam", "binary_crossentropy", jit_compile=jit)
        return m.astype(np.float64)

    ref, fast = make(False), make(True)
    x = np.random.default_rng(0).random((4, 6, 6, 1))
    assert fast.compute_gradients(x, x) == pytest.approx(ref.compute_gradients(x, x), rel=1e-12)
    for a, b in zip(ref.gradients().values(), fast.gradients().values()):
        assert_close(b, a, np.float64)


def test_a_custom_layer_runs_in_the_plans_mode():
    class HalfInTraining(Layer):  # a dropout-like layer: behaves differently in training
        def forward(self, x, training=False):
            x = self._check_input(x)
            return (0.5 * x if training else x), training

        def backward(self, dout, cache):
            return (0.5 * dout if cache else dout), {}

    def make(jit):
        npae.set_random_seed(0)
        inp = Input(shape=(4,))
        m = Model(inp, Dense(3)(HalfInTraining()(Dense(4)(inp))))
        m.compile("sgd", "mse", jit_compile=jit)
        return m.astype(np.float64)

    x, y = np.random.default_rng(0).random((5, 4)), np.random.default_rng(1).random((5, 3))
    ref, fast = make(False), make(True)
    np.testing.assert_allclose(fast.predict(x), ref.predict(x), rtol=1e-12)
    assert fast.evaluate(x, y) == pytest.approx(ref.evaluate(x, y), rel=1e-12)
    assert fast.compute_gradients(x, y) == pytest.approx(ref.compute_gradients(x, y), rel=1e-12)


def test_a_subclass_of_binary_crossentropy_keeps_its_own_loss():
    from npae.losses import BinaryCrossentropy

    class Doubled(BinaryCrossentropy):
        def forward(self, y_pred, y_true):
            value, cache = super().forward(y_pred, y_true)
            return 2 * value, cache

        def backward(self, cache):
            return 2 * super().backward(cache)

    values = []
    for jit in (False, True):
        for last, from_logits in (("sigmoid", False), ("linear", True)):
            npae.set_random_seed(0)
            inp = Input(shape=(4,))
            m = Model(inp, Dense(4, activation=last)(inp))
            m.compile("sgd", Doubled(from_logits=from_logits), jit_compile=jit)
            x = np.random.default_rng(0).random((6, 4))
            plain = BinaryCrossentropy(from_logits=from_logits)(x, m.predict(x))
            values.append(m.evaluate(x, x))
            assert values[-1] == pytest.approx(2 * plain, rel=1e-5), (jit, last)


def test_fit_in_one_thread_and_predict_in_another_under_workqueue():
    import subprocess
    import sys

    code = ("import threading, numpy as np\n"
            "from npae import autoencoders\n"
            "a, b = autoencoders.vanilla(seed=0)[0], autoencoders.deep(seed=0)[0]\n"
            "x = np.random.default_rng(0).random((2048, 784), dtype=np.float32)\n"
            "t = threading.Thread(target=lambda: a.fit(x, x, epochs=2, batch_size=64, verbose=0))\n"
            "t.start()\n"
            "for _ in range(40): b.predict(x[:256], verbose=0)\n"
            "t.join()\n"
            "import numba; print(numba.threading_layer())\n")
    env = {**__import__("os").environ, "NUMBA_THREADING_LAYER": "workqueue"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0 and res.stdout.strip() == "workqueue", res.stderr[-2000:]


def test_the_path_is_a_setting_that_a_saved_model_keeps(tmp_path):
    import pickle

    ae = autoencoders.vanilla(encoding_dim=4, input_dim=6, seed=0)[0]
    ae.compile("adam", "mse", jit_compile=False)
    assert not ae.jit_compile and type(ae.path).__name__ == "ReferencePath"
    ae.save(tmp_path / "m.npz")
    assert not npae.load_model(tmp_path / "m.npz").jit_compile
    ae.jit_compile = True
    assert isinstance(ae.path, FastPath)
    ae.compile("adam", "mse", run_eagerly=True)  # Keras's step-by-step mode: the reference path
    assert not ae.jit_compile
    ae.jit_compile = "auto"
    ae.fit(np.zeros((4, 6), np.float32), np.zeros((4, 6), np.float32), verbose=0)
    clone = pickle.loads(pickle.dumps(ae))  # plans and workspaces are not pickled, but rebuilt
    np.testing.assert_array_equal(clone.predict(np.ones((2, 6))), ae.predict(np.ones((2, 6))))
    with pytest.raises(ValueError, match="give y, the targets"):
        ae.fit(np.zeros((4, 6)), verbose=0)


def test_shrinking_layers_with_many_channels_do_not_take_the_direct_kernel():
    assert policy.conv_algorithm((3, 3), (1, 1), 64, 32, (28, 28), True, True) is ConvAlgo.WINOGRAD
    assert policy.conv_algorithm((3, 3), (1, 1), 16, 8, (14, 14), True, True) is ConvAlgo.DIRECT  # the tutorial's


# ----------------------------------------------------------------------------- Conv2DTranspose, BatchNormalization

CONV_T_CASES = [  # (image, cin, filters, kernel, padding, strides, output_padding, activation, use_bias)
    ((7, 7), 4, 3, 3, "same", 2, None, "relu", True), ((5, 6), 3, 2, 3, "valid", 2, None, "linear", True),
    ((4, 5), 2, 3, (2, 3), "same", (2, 1), None, "sigmoid", False), ((6, 4), 3, 4, 4, "same", 2, None, "relu", True),
    ((3, 3), 2, 2, 5, "valid", 3, (1, 2), "tanh", True), ((5, 5), 3, 3, 3, "same", 1, None, "relu", False),
    ((4, 6), 2, 5, (3, 1), "same", (2, 3), (0, 1), "linear", True), ((2, 3), 4, 2, 2, "valid", 1, None, "elu", True),
    ((3, 4), 2, 3, 3, "same", 2, None, "softmax", True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_T_CASES)
def test_the_transposed_convolution_step_gives_the_reference_numbers(case, dtype):
    from npae.fast.steps import ConvTransposeStep
    from npae.layers import Conv2DTranspose

    (h, w), cin, filters, kernel, padding, strides, output_padding, activation, use_bias = case
    rng = np.random.default_rng(3)
    layer = built(Conv2DTranspose(filters, kernel, strides=strides, padding=padding, output_padding=output_padding,
                                  activation=activation, use_bias=use_bias), (h, w, cin), dtype)
    x = rng.standard_normal((3, h, w, cin)).astype(dtype)
    g = rng.standard_normal((3, *layer.output_shape)).astype(dtype)
    want_out, want_dx, want_grads = reference([layer], x, g)
    for needs_dx in (True, False):
        out, dx, grads = run_step(ConvTransposeStep(layer, needs_dx=needs_dx), x, g)
        assert_close(out, want_out, dtype, "forward")
        assert (dx is None) == (not needs_dx)
        if needs_dx:
            assert_close(dx, want_dx, dtype, "dx")
        for key, want in want_grads.items():
            assert_close(grads[key], want, dtype, key)


def bn_layer(shape, dtype, **kwargs):
    from npae.layers import BatchNormalization

    layer = built(BatchNormalization(**kwargs), shape, dtype)
    rng = np.random.default_rng(7)
    for k in layer.params:  # statistics and scales away from their initial 0 / 1
        layer.params[k][...] = rng.uniform(0.5, 1.5, layer.params[k].shape) * (1 if "variance" in k else
                                                                              rng.choice([-1, 1]))
    return layer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("kwargs", [{}, {"center": False}, {"scale": False}, {"momentum": 0.5, "epsilon": 0.1}])
def test_the_batchnorm_step_gives_the_reference_numbers(kwargs, relu, training, dtype):
    from npae.fast.steps import BatchNormStep
    from npae.layers import ReLU

    shape = (5, 6, 4)
    layers = [bn_layer(shape, dtype, **kwargs)] + ([built(ReLU(), shape, dtype)] if relu else [])
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((7, *shape)) * 3 + 2).astype(dtype)
    g = rng.standard_normal((7, *shape)).astype(dtype)
    bn = layers[0]
    before = {k: v.copy() for k, v in bn.params.items()}
    caches, h = [], x
    for layer in layers:  # the reference, in the step's mode
        h, cache = layer.forward(h, training=training)
        caches.append(cache)
    want_out, want_moving = h, {k: bn.params[k].copy() for k in ("moving_mean", "moving_variance")}
    gg, want_grads = g, {}
    for layer, cache in zip(reversed(layers), reversed(caches)):
        gg, gs = layer.backward(gg, cache)
        want_grads.update({param_key(layer, k): v for k, v in gs.items()})
    for k, v in before.items():
        bn.params[k][...] = v
    step = BatchNormStep(bn, training=training, relu=layers[1] if relu else None)
    ws = memory.Workspace()
    grads = {param_key(bn, k): np.full_like(bn.params[k], np.nan) for k in bn.trainable_param_names()}
    out, saved = step.forward(x.copy(), ws, None)
    assert_close(out, want_out, dtype, "forward")
    for k, v in want_moving.items():  # the moving statistics move (in training) exactly as the layer's
        assert_close(bn.params[k], v, dtype, k)
    dx = step.backward(g.copy(), saved, ws, grads)
    assert_close(dx, gg, dtype, "dx")
    for key, grad in grads.items():
        assert_close(grad, want_grads[key], dtype, key)


def test_the_plan_fuses_batchnorm_and_relu_and_runs_transposed_convolutions_on_kernels():
    model = autoencoders.transposed(seed=0)[0]
    train = model.path.plan("train").describe()
    assert sum(s.startswith("BatchNormStep(") and "re_lu" in s for s in train) == 4
    assert not any(s.startswith("ActivationStep") for s in train)
    assert sum(s.startswith("ConvTransposeStep(") for s in train) == 2
    assert train[0].startswith("ReferenceStep(gaussian_noise")


def test_batchnorm_over_another_axis_runs_its_reference_passes():
    from npae.layers import BatchNormalization

    npae.set_random_seed(0)
    model = Sequential([npae.Input((4, 6)), BatchNormalization(axis=1), Flatten(), Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    assert model.path.plan("train").describe()[0].startswith("ReferenceStep(")
    ref = Sequential([npae.Input((4, 6)), BatchNormalization(axis=1), Flatten(), Dense(3)])
    ref.set_weights(model.get_weights())
    ref.compile(optimizer="adam", loss="mse", jit_compile=False)
    x = np.random.default_rng(0).random((8, 4, 6)).astype(np.float32)
    y = np.random.default_rng(1).random((8, 3)).astype(np.float32)
    assert model.train_on_batch(x, y) == pytest.approx(ref.train_on_batch(x, y), rel=1e-6)
