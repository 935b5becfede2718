"""Classification: a softmax output with categorical cross-entropy, on both paths. A softmax output
whose only reader is categorical cross-entropy hands the loss its logits (as a sigmoid's does
binary cross-entropy): the plans, the numbers (the two paths within 1e-10 in float64, the fused
loss equal to the loss of the probabilities), the gradients (full gradient checks), the metrics
(computed on the softmax's output), and saving."""

import copy

import numpy as np
import pytest

import npae
from npae import losses
from npae.functional import activations
from npae.layers import Activation, Conv2D, Dense, Flatten, Input, Softmax
from npae.models import Model, load_model


def classes(n=12, d=6, c=4, seed=0):
    """x (n, d) and one-hot y (n, c) of c separable classes (the class is where x's first c
    coordinates peak)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    x = rng.standard_normal((n, d)) * 0.3
    x[np.arange(n), labels] += 2.0
    return x, np.eye(c)[labels]


def dense_softmax(kind="dense", seed=0, c=4):
    """Dense(tanh) then a softmax made three ways: Dense(activation="softmax"), Softmax() or
    Activation("softmax") after a linear Dense."""
    npae.set_random_seed(seed)
    inp = Input(shape=(6,))
    h = Dense(8, activation="tanh")(inp)
    if kind == "dense":
        out = Dense(c, activation="softmax", name="probs")(h)
    else:
        out = (Softmax if kind == "layer" else lambda **k: Activation("softmax", **k))(name="probs")(Dense(c)(h))
    return Model(inp, out)


def conv_softmax(seed=0):
    """Per-pixel classes: a Conv2D with a softmax over its 3 channels (segmentation's form)."""
    npae.set_random_seed(seed)
    inp = Input(shape=(5, 5, 2))
    h = Conv2D(4, 3, padding="same", activation="relu")(inp)
    return Model(inp, Conv2D(3, 3, padding="same", activation="softmax", name="probs")(h))


def pixels(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5, 5, 2)), np.eye(3)[rng.integers(0, 3, (n, 5, 5))]


BUILDS = {"dense": (lambda: dense_softmax("dense"), classes), "layer": (lambda: dense_softmax("layer"), classes),
          "activation": (lambda: dense_softmax("activation"), classes), "conv": (conv_softmax, pixels)}


def both_paths(build, loss="categorical_crossentropy", metrics=None):
    fast = build()
    ref = copy.deepcopy(fast)
    for model, jit in ((fast, True), (ref, False)):
        model.compile("adam", loss, metrics=metrics, jit_compile=jit)
        model.astype("float64")
    return fast, ref


@pytest.mark.parametrize("name", list(BUILDS))
def test_a_softmax_output_hands_categorical_crossentropy_its_logits(name):
    model = BUILDS[name][0]()
    model.compile("sgd", "categorical_crossentropy")
    (head,) = model.objective.heads(model.flat)
    assert head.logits and type(head.loss) is losses.CategoricalCrossentropy and head.loss.from_logits
    assert head.loss.logits_activation == "softmax"


def test_what_does_not_hand_over_its_logits():
    def head(model, loss):
        model.compile("sgd", loss)
        return model.objective.heads(model.flat)[0]

    assert not head(dense_softmax(), "mse").logits
    h = head(dense_softmax(), losses.CategoricalCrossentropy(from_logits=True))  # (logits already: nothing to fuse)
    assert not h.logits and h.loss.from_logits
    npae.set_random_seed(0)
    inp = Input(shape=(6,))
    assert not head(Model(inp, Dense(4, activation="sigmoid")(inp)), "categorical_crossentropy").logits
    assert not head(Model(inp, Dense(4, activation="softmax")(inp)), "binary_crossentropy").logits
    probs = Dense(4, activation="softmax")(inp)
    assert not head(Model(inp, [probs, Dense(2)(probs)]), ["categorical_crossentropy", "mse"]).logits  # read again
    penalised = Dense(4, activation="softmax", activity_regularizer="l2")(inp)
    assert not head(Model(inp, penalised), "categorical_crossentropy").logits

    class Halved(losses.CategoricalCrossentropy):  # a subclass may compute another loss: kept as it is
        def forward(self, y_pred, y_true):
            value, cache = super().forward(y_pred, y_true)
            return value / 2, cache

    h = head(Model(inp, Dense(4, activation="softmax")(inp)), Halved())
    assert not h.logits and type(h.loss) is Halved


@pytest.mark.parametrize("name", list(BUILDS))
def test_the_fast_paths_plan_stops_at_the_logits_and_runs_the_reference_loss(name):
    from npae.fast import planner
    from npae.fast.steps import ActivationStep, ConvStep, DenseStep

    model = BUILDS[name][0]()
    model.compile("sgd", "categorical_crossentropy")
    plan = planner.plan(model.flat, model.objective.heads(model.flat), "train", np.float64)
    last = plan.steps[-1]
    assert isinstance(last, {"dense": DenseStep, "conv": ConvStep}.get(name, ActivationStep)) and last.logits
    assert plan.loss.kind == "reference" and plan.loss.logits and plan.loss.loss.logits_activation == "softmax"
    assert not planner.plan(model.flat, [], "predict", np.float64).steps[-1].logits  # (prediction: the softmax)


@pytest.mark.parametrize("name", list(BUILDS))
def test_both_paths_give_the_same_numbers_in_float64(name):
    build, data = BUILDS[name]
    fast, ref = both_paths(build)
    x, y = data()
    lf, lr = fast.compute_gradients(x, y), ref.compute_gradients(x, y)
    assert abs(lf - lr) <= 1e-10 * abs(lr)
    for k, g in ref.gradients().items():
        np.testing.assert_allclose(fast.gradients()[k], g, rtol=1e-10, atol=1e-12, err_msg=k)
        assert np.any(g != 0), k
    pf, pr = fast.predict(x, verbose=0), ref.predict(x, verbose=0)
    np.testing.assert_allclose(pf, pr, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(pr.sum(axis=-1), 1.0, rtol=1e-12)  # (predict applies the softmax)
    assert fast.evaluate(x, y, verbose=0) == pytest.approx(ref.evaluate(x, y, verbose=0), rel=1e-10)
    # the loss from the logits is the loss of the predicted probabilities (nothing here is clipped)
    assert lr == pytest.approx(losses.CategoricalCrossentropy()(y, pr), rel=1e-10)
    for model in (fast, ref):
        model.fit(x, y, epochs=2, batch_size=5, verbose=0, seed=0)
    for a, b in zip(fast.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", ["dense", "layer", "conv"])
def test_full_gradient_check(name, jit):
    build, data = BUILDS[name]
    model = build()
    model.compile("sgd", "categorical_crossentropy")
    x, y = data(n=4, seed=1)
    report = npae.check_model(model, x, y, mode="full", jit_compile=jit)
    assert report.passed, report.table()


@pytest.mark.parametrize("jit", [False, True])
def test_categorical_crossentropy_from_logits_on_a_linear_output(jit):
    npae.set_random_seed(1)
    inp = Input(shape=(6,))
    model = Model(inp, Dense(4)(Dense(8, activation="tanh")(inp)))
    model.compile("sgd", losses.CategoricalCrossentropy(from_logits=True), jit_compile=jit)
    x, y = classes(seed=2)
    model.astype("float64")
    assert npae.check_model(model, x, y, mode="full").passed
    value = model.evaluate(x, y, verbose=0)
    assert value == pytest.approx(losses.CategoricalCrossentropy()(y, activations.softmax(model.predict(x))),
                                  rel=1e-10)


@pytest.mark.parametrize("jit", [False, True])
def test_a_softmax_classifier_learns(jit):
    x, y = classes(n=200, seed=3)
    model = dense_softmax(seed=3)
    model.compile(npae.optimizers.Adam(0.02), "categorical_crossentropy", metrics=["accuracy"], jit_compile=jit)
    h = model.fit(x.astype(np.float32), y.astype(np.float32), epochs=30, batch_size=32, verbose=0, seed=0)
    assert h.history["loss"][-1] < 0.3 * h.history["loss"][0]
    assert h.history["accuracy"][-1] > 0.95


@pytest.mark.parametrize("jit", [False, True])
def test_metrics_see_the_softmax_output(jit):
    # the metrics are computed on the output (the softmax applied to the logits the head took), as
    # Keras computes them: categorical_crossentropy then equals the loss, and "accuracy" of a softmax
    # output is categorical_accuracy
    x, y = classes(n=10, seed=4)
    model = dense_softmax(seed=4)
    model.compile("sgd", "categorical_crossentropy", metrics=["categorical_crossentropy", "accuracy"],
                  jit_compile=jit)
    model.astype("float64")
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0)
    assert logs["categorical_crossentropy"] == pytest.approx(logs["loss"], rel=1e-10)
    assert logs["categorical_crossentropy"] == pytest.approx(
        float(np.mean(npae.metrics.categorical_crossentropy(y, p))), rel=1e-10)
    assert logs["accuracy"] == pytest.approx(float(np.mean(np.argmax(p, -1) == np.argmax(y, -1))))
    h = model.fit(x, y, epochs=1, batch_size=10, verbose=0, shuffle=False)
    assert h.history["categorical_crossentropy"][0] == pytest.approx(h.history["loss"][0], rel=1e-10)


@pytest.mark.parametrize("jit", [False, True])
def test_two_heads_report_each_output_through_its_own_activation(jit):
    npae.set_random_seed(5)
    inp = Input(shape=(6,))
    h = Dense(8, activation="tanh")(inp)
    model = Model(inp, [Dense(4, activation="softmax", name="kind")(h), Dense(3, activation="sigmoid", name="bits")(h)])
    model.compile("sgd", ["categorical_crossentropy", "binary_crossentropy"],
                  metrics=[["categorical_crossentropy"], ["binary_crossentropy"]], jit_compile=jit)
    model.astype("float64")
    assert [hd.loss.logits_activation for hd in model.objective.heads(model.flat)] == ["softmax", "sigmoid"]
    x, y = classes(n=8, seed=5)
    bits = np.random.default_rng(6).integers(0, 2, (8, 3)).astype(np.float64)
    logs = model.evaluate(x, [y, bits], verbose=0, return_dict=True)
    assert logs["kind_categorical_crossentropy"] == pytest.approx(logs["kind_loss"], rel=1e-10)
    assert logs["bits_binary_crossentropy"] == pytest.approx(logs["bits_loss"], rel=1e-6)


def test_a_model_compiled_with_categorical_crossentropy_saves_and_loads(tmp_path):
    x, y = classes(seed=7)
    for loss in ("categorical_crossentropy", losses.CategoricalCrossentropy(from_logits=True)):
        model = dense_softmax(seed=7) if isinstance(loss, str) else Model(*_linear_head())
        model.compile("adam", loss, metrics=["categorical_crossentropy"])
        model.fit(x, y, epochs=1, batch_size=4, verbose=0)
        model.save(tmp_path / "m.npz")
        back = load_model(tmp_path / "m.npz")
        assert type(back.loss) is losses.CategoricalCrossentropy and back.loss.from_logits == model.loss.from_logits
        np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
        assert back.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)


def _linear_head():
    npae.set_random_seed(8)
    inp = Input(shape=(6,))
    return inp, Dense(4)(Flatten()(inp))
