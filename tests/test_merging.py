"""The merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate): forward
passes against plain definitions (a loop over every output) on seeded random shapes, float64
gradient checks with broadcasting, ties, the multi-input contract, errors and configs."""

import math

import numpy as np
import pytest

from npae import gradcheck
from npae.functional import merge
from npae.layers import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    deserialize,
    maximum,
    minimum,
    multiply,
    serialize,
    subtract,
)

ELEMENTWISE = [Add, Subtract, Multiply, Average, Maximum, Minimum]
ALL = [*ELEMENTWISE, Concatenate]
COMBINE = {"Add": sum, "Subtract": lambda v: v[0] - v[1], "Multiply": math.prod, "Average": lambda v: sum(v) / len(v),
           "Maximum": max, "Minimum": min}


def naive_elementwise(name, xs):
    """The merge by its definition: for every output index, each input's value at that index (an
    axis of size 1, or missing at the front, repeats), combined by plain Python."""
    rank = max(x.ndim - 1 for x in xs)
    padded = [(1,) * (rank + 1 - x.ndim) + x.shape[1:] for x in xs]
    views = [x.reshape(x.shape[:1] + s) for x, s in zip(xs, padded)]
    out = np.zeros((xs[0].shape[0], *(max(s[a] for s in padded) for a in range(rank))))
    for n, *idx in np.ndindex(out.shape):
        values = [v[(n, *(0 if d == 1 else i for d, i in zip(s, idx)))].item() for v, s in zip(views, padded)]
        out[(n, *idx)] = COMBINE[name](values)
    return out


def random_broadcast_shapes(rng, k):
    """k sample shapes that broadcast: the last axes of one shape, some sizes replaced by 1."""
    full = [int(d) for d in rng.integers(1, 5, int(rng.integers(1, 4)))]
    shapes = []
    for _ in range(k):
        kept = full[len(full) - int(rng.integers(1, len(full) + 1)):]
        shapes.append(tuple(1 if rng.random() < 0.3 else d for d in kept))
    return shapes


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_elementwise_forward_is_the_definition_on_random_shapes(cls):
    rng = np.random.default_rng(0)
    for trial in range(25):
        k = 2 if cls is Subtract else int(rng.integers(1, 5))
        shapes = random_broadcast_shapes(rng, k)
        n = int(rng.integers(1, 4))
        xs = [rng.standard_normal((n, *s)) for s in shapes]
        out, _ = cls(dtype="float64").forward(xs)
        want = naive_elementwise(cls.__name__, xs)
        np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-15,
                                   err_msg=f"trial {trial}: {cls.__name__} of shapes {[x.shape for x in xs]}")


def test_broadcast_rule_is_numpys_on_sample_shapes():
    rng = np.random.default_rng(1)
    for trial in range(200):
        shapes = [tuple(int(d) for d in rng.integers(1, 4, int(rng.integers(0, 4)))) for _ in range(3)]
        try:
            want = np.broadcast_shapes(*shapes)
        except ValueError:
            with pytest.raises(ValueError, match="inputs have incompatible shapes"):
                merge.broadcast_shapes(shapes)
        else:
            assert merge.broadcast_shapes(shapes) == want, f"trial {trial}: {shapes}"


def test_concatenate_forward_is_the_definition_on_random_shapes():
    rng = np.random.default_rng(2)
    for trial in range(30):
        rank = int(rng.integers(1, 4))
        base = [int(d) for d in rng.integers(1, 4, rank)]
        a = int(rng.integers(0, rank))  # the axis within the sample shape
        sizes = [int(d) for d in rng.integers(1, 4, int(rng.integers(1, 4)))]
        xs = [rng.standard_normal((2, *base[:a], d, *base[a + 1:])) for d in sizes]
        axis = a + 1 if rng.random() < 0.5 else a - rank  # Keras's positive or negative spelling
        out, _ = Concatenate(axis=axis, dtype="float64").forward(xs)
        want = np.zeros((2, *base[:a], sum(sizes), *base[a + 1:]))
        start = 0
        for x, d in zip(xs, sizes):  # each input written into its slice, index by index
            for idx in np.ndindex(x.shape):
                at = list(idx)
                at[a + 1] += start
                want[tuple(at)] = x[idx]
            start += d
        np.testing.assert_array_equal(out, want, err_msg=f"trial {trial}: axis {axis}, shapes {[x.shape for x in xs]}")


BROADCAST_CASES = [[(3, 4), (3, 4)], [(3, 1), (1, 4)], [(2, 3, 4), (4,)], [(2, 1, 4), (3, 1), (1,)],
                   [(4, 4, 2), (1, 1, 2)], [(3, 2), (3, 2), (3, 2), (3, 2)], [(5,)]]


@pytest.mark.parametrize("cls,shapes", [(cls, shapes) for cls in ELEMENTWISE for shapes in BROADCAST_CASES
                                        if cls is not Subtract or len(shapes) == 2], ids=str)
def test_elementwise_gradcheck(cls, shapes):
    report = gradcheck.check_layer(cls(), input_shape=shapes, seed=len(shapes))
    assert report.passed and [c.name for c in report.checks] == [f"input {i}" for i in range(len(shapes))], \
        report.table()


@pytest.mark.parametrize("axis,shapes", [
    (-1, [(3, 2), (3, 4)]), (1, [(2, 3), (4, 3), (1, 3)]), (2, [(2, 3, 4), (2, 1, 4)]),
    (-2, [(2, 3, 4), (2, 5, 4)]), (3, [(2, 3, 1), (2, 3, 2)]), (-1, [(6,), (1,)]),
])
def test_concatenate_gradcheck(axis, shapes):
    report = gradcheck.check_layer(Concatenate(axis=axis), input_shape=shapes)
    assert report.passed and len(report.checks) == len(shapes), report.table()


@pytest.mark.parametrize("cls,x0,x1,first_wins", [
    (Maximum, [1.0, 2.0, 3.0, 4.0], [1.0, 5.0, 3.0, 0.0], [True, False, True, True]),
    (Minimum, [1.0, 2.0, 3.0, 4.0], [1.0, 5.0, 3.0, 0.0], [True, True, True, False]),
])
def test_ties_send_the_gradient_to_the_first_input_and_are_skipped_by_gradcheck(cls, x0, x1, first_wins):
    xs = [np.array([x0, x0]), np.array([x1, x1])]  # ties at places 0 and 2
    layer = cls(dtype="float64")
    out, cache = layer.forward(xs)
    np.testing.assert_array_equal(out[0], np.where(first_wins, x0, x1))
    dout = np.arange(1.0, 9.0).reshape(2, 4)
    (dx0, dx1), grads = layer.backward(dout, cache)
    assert grads == {}
    np.testing.assert_array_equal(dx0, np.where(first_wins, dout, 0.0))
    np.testing.assert_array_equal(dx1, np.where(first_wins, 0.0, dout))
    report = gradcheck.check_layer(cls(), x=xs)
    assert report.passed, report.table()
    assert [(c.checked, c.skipped) for c in report.checks] == [(4, 4), (4, 4)]  # the 2 x 2 tied values skipped


def test_ties_among_later_inputs_and_under_broadcasting():
    layer = Maximum(dtype="float64")
    _, cache = layer.forward([np.zeros((1, 3)), np.ones((1, 3)), np.ones((1, 3))])
    dxs, _ = layer.backward(np.ones((1, 3)), cache)
    assert [d.sum() for d in dxs] == [0.0, 3.0, 0.0]  # x_1 and x_2 tie: x_1, the first of them, wins
    layer = Maximum(dtype="float64")
    _, cache = layer.forward([np.full((2, 3), 2.0), np.full((2, 1), 2.0)])  # x_2 repeated, tied everywhere
    dxs, _ = layer.backward(np.ones((2, 3)), cache)
    np.testing.assert_array_equal(dxs[0], np.ones((2, 3)))
    np.testing.assert_array_equal(dxs[1], np.zeros((2, 1)))


def test_gradcheck_names_the_wrong_input_of_a_merge():
    class BadMultiply(Multiply):
        def backward(self, dout, cache):
            dxs, grads = super().backward(dout, cache)
            return [dxs[0], dxs[1] * 1.01, dxs[2]], grads

    report = gradcheck.check_layer(BadMultiply(), input_shape=[(3,), (3,), (1,)], raise_on_failure=False)
    assert [c.name for c in report.checks if not c.passed] == ["input 1"]
    with pytest.raises(gradcheck.GradcheckError, match=r"gradient of input 1 wrong at index"):
        gradcheck.check_layer(BadMultiply(), input_shape=[(3,), (3,), (1,)])
    with pytest.raises(ValueError, match="takes a list of inputs"):
        gradcheck.check_layer(Add(), x=np.zeros((2, 3)))


@pytest.mark.parametrize("cls", ALL)
def test_the_multi_input_contract(cls):
    layer = cls()
    assert cls.many_inputs is True and layer.param_order == () and not layer.built
    assert layer.compute_output_shape([[3, 4], (3, 4)]) == ((3, 8) if cls is Concatenate else (3, 4))
    layer.build([[3, 4], (3, 4)])
    assert layer.built and layer.input_shape == [(3, 4), (3, 4)] and layer.output_shape == layer.compute_output_shape(
        layer.input_shape) and layer.params == {} and layer.count_params() == 0 and layer.get_weights() == []
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((2, 3, 4)), rng.integers(0, 5, (2, 3, 4))]
    before = dict(vars(layer))
    out, cache = layer.forward(xs)
    assert out.dtype == np.float32 and out.shape == (2, *layer.output_shape)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dout_before = dout.copy()
    dxs, grads = layer.backward(dout, cache)
    assert grads == {} and [d.shape for d in dxs] == [(2, 3, 4), (2, 3, 4)]
    assert all(d.dtype == np.float32 for d in dxs)
    assert not any(np.shares_memory(d, a) for d in dxs for a in (dout, out, *xs)) and not np.shares_memory(*dxs)
    np.testing.assert_array_equal(dout, dout_before)
    assert vars(layer).keys() == before.keys() and all(vars(layer)[k] is before[k] for k in before)
    np.testing.assert_array_equal(layer(xs), out)  # the eager call is the forward output


@pytest.mark.parametrize("cls", [Add, Multiply, Average, Maximum, Minimum, Concatenate])
def test_one_input_is_the_identity_as_in_keras_3(cls):
    x = np.random.default_rng(4).standard_normal((2, 3)).astype(np.float32)
    out, cache = cls().forward([x])
    np.testing.assert_array_equal(out, x)
    assert not np.shares_memory(out, x)
    dxs, _ = cls().backward(np.ones_like(out), cache)
    assert len(dxs) == 1 and dxs[0].shape == x.shape


def test_functional_helpers_on_arrays():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 1, 4))
    f32 = np.float32
    np.testing.assert_allclose(add([a, b]), (a + b).astype(f32), rtol=1e-6)
    np.testing.assert_allclose(subtract([a, b]), (a - b).astype(f32), rtol=1e-6)
    np.testing.assert_allclose(multiply([a, b, b]), (a * b * b).astype(f32), rtol=1e-6)
    np.testing.assert_allclose(average([a, b]), ((a + b) / 2).astype(f32), rtol=1e-6)
    np.testing.assert_allclose(maximum([a, b]), np.maximum(a, b).astype(f32))
    np.testing.assert_allclose(minimum([a, b]), np.minimum(a, b).astype(f32))
    np.testing.assert_allclose(concatenate([a, b], axis=1), np.concatenate([a, b], 1).astype(f32))
    assert concatenate([a, a]).shape == (2, 3, 8) and add([a, b], dtype="float64").dtype == np.float64


@pytest.mark.parametrize("make,inputs,error,message", [
    (Add, [(2, 28, 28, 32), (2, 14, 14, 32)], ValueError,
     r"Add layer '.*': inputs have incompatible shapes \(28, 28, 32\) and \(14, 14, 32\)"),
    (Multiply, [(2, 3, 4), (2, 3)], ValueError, r"incompatible shapes \(3, 4\) and \(3,\)"),
    (Maximum, [(2, 3, 4), (2, 1, 4), (2, 2, 4)], ValueError, r"incompatible shapes \(3, 4\) and \(2, 4\)"),
    (Concatenate, [(2, 3, 4), (2, 2, 5)], ValueError,
     r"incompatible shapes \(3, 4\) and \(2, 5\) for concatenation on axis -1"),
    (Concatenate, [(2, 3, 4), (2, 4)], ValueError, r"incompatible shapes \(3, 4\) and \(4,\): .*equal ranks"),
    (Add, [], ValueError, r"expects a list of at least 1 input, got 0"),
    (Subtract, [(2, 3)], ValueError, r"Subtract layer '.*': expects exactly 2 inputs, got 1"),
    (Subtract, [(2, 3)] * 3, ValueError, r"expects exactly 2 inputs, got 3"),
    (Average, [(2, 3), (1, 3)], ValueError, r"different batch sizes: input 0 of shape \(2, 3\) and input 1"),
    (lambda: Concatenate(axis=-3), [(2, 3, 4), (2, 3, 4)], NotImplementedError, r"axis=-3 is the batch axis"),
    (lambda: Concatenate(axis=3), [(2, 3, 4), (2, 3, 4)], ValueError, r"axis 3 is not a sample axis"),
])
def test_shapes_that_do_not_merge_are_clear_errors(make, inputs, error, message):
    with pytest.raises(error, match=message):
        make().forward([np.zeros(s, np.float32) for s in inputs])
    if "batch sizes" not in message:  # (the shapes given to build have no batch axis)
        with pytest.raises(error, match=message):
            make().build([s[1:] for s in inputs])


@pytest.mark.parametrize("call,error,message", [
    (lambda: Add().forward(np.zeros((2, 3))), ValueError, r"list of inputs .*got one array of shape \(2, 3\)"),
    (lambda: Add().build((3, 4)), ValueError, r"expects a list of input shapes .*got \(3, 4\)"),
    (lambda: Add().forward([np.array(["a", "b"]), np.zeros(2)]), TypeError, r"input 0 must be a numeric array"),
    (lambda: Concatenate(axis=0), NotImplementedError, r"axis=0 is the batch axis: Keras concatenates along it"),
    (lambda: Concatenate(axis="1"), ValueError, r"axis must be an int, got '1'"),
    (lambda: Add(input_shape=(3,)), NotImplementedError, r"input_shape=\(3,\) is a Keras argument"),
    (lambda: Add(wibble=1), TypeError, r"unexpected keyword argument 'wibble'"),
])
def test_bad_calls_and_configurations_are_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_built_layer_checks_its_inputs():
    layer = Add()
    layer.build([(3,), (3,)])
    with pytest.raises(ValueError, match=r"expected input 1 of shape \(batch, 3\), got \(2, 4\)"):
        layer.forward([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match=r"was built for 2 inputs, got 3"):
        layer.forward([np.zeros((2, 3))] * 3)


@pytest.mark.parametrize("make", [*ELEMENTWISE, lambda: Concatenate(axis=-2, name="joined", dtype="float64")])
def test_config_round_trip(make):
    layer = make()
    again = deserialize(serialize(layer))
    assert type(again) is type(layer) and again.get_config() == layer.get_config()
    xs = [np.random.default_rng(6).standard_normal((2, 3, 4))] * 2
    np.testing.assert_array_equal(again.forward(xs)[0], layer.forward(xs)[0])
    if isinstance(layer, Concatenate):
        assert again.axis == -2 and again.name == "joined" and again.dtype == np.float64
