"""Training a model with several inputs and outputs as Keras 3 does (losses per output, loss
weights, metrics per output, the history's keys, lists and dicts of data), and fit / evaluate /
predict on generators and sequences of batches."""

import warnings

import numpy as np
import pytest

import npae
from npae.callbacks import CSVLogger, EarlyStopping
from npae.layers import Concatenate, Dense, Input
from npae.models import Model


def two_heads(jit=True):
    """inp (4,) -> h -> out_a (2,) linear and out_b (1,) sigmoid; Keras's names for them."""
    npae.set_random_seed(0)
    x = Input((4,), name="inp")
    h = Dense(3, activation="relu", name="h")(x)
    model = Model(x, [Dense(2, name="out_a")(h), Dense(1, activation="sigmoid", name="out_b")(h)])
    model.jit_compile = jit
    return model


def arrays(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 4)).astype(np.float32), rng.random((n, 2)).astype(np.float32),
            (rng.random((n, 1)) > 0.5).astype(np.float32))


@pytest.mark.parametrize("jit", [False, True])
def test_keras_3_keys_order_and_values_for_two_outputs(jit):
    # the keys and the evaluate order Keras 3.15 gives for this compile (checked in Keras itself)
    model = two_heads(jit)
    model.compile(optimizer="sgd", loss=["mse", "binary_crossentropy"], loss_weights=[1.0, 0.5],
                  metrics=[["mae"], ["accuracy"]])
    X, A, B = arrays()
    hist = model.fit(X, [A, B], epochs=2, verbose=0, validation_split=0.2)
    assert set(hist.history) == {"loss", "out_a_loss", "out_a_mae", "out_b_accuracy", "out_b_loss", "val_loss",
                                 "val_out_a_loss", "val_out_a_mae", "val_out_b_accuracy", "val_out_b_loss"}
    assert model.metrics_names == ["loss", "out_a_loss", "out_b_loss", "out_a_mae", "out_b_accuracy"]
    logs = model.evaluate(X, [A, B], verbose=0, return_dict=True)
    listed = model.evaluate(X, [A, B], verbose=0)
    assert listed == pytest.approx([logs[k] for k in model.metrics_names])
    a, b = model.predict(X, verbose=0)
    assert logs["out_a_loss"] == pytest.approx(np.mean((a - A) ** 2), rel=1e-5)
    p = np.clip(b, 1e-7, 1 - 1e-7)
    assert logs["out_b_loss"] == pytest.approx(-np.mean(B * np.log(p) + (1 - B) * np.log(1 - p)), rel=1e-4)
    assert logs["loss"] == pytest.approx(logs["out_a_loss"] + 0.5 * logs["out_b_loss"], rel=1e-6)
    assert logs["out_a_mae"] == pytest.approx(np.mean(np.abs(a - A)), rel=1e-5)
    assert logs["out_b_accuracy"] == pytest.approx(np.mean(B == (b > 0.5)))


def test_one_loss_for_every_output_dicts_by_name_and_dict_outputs():
    model = two_heads()
    model.compile(optimizer="sgd", loss="mse")
    X, A, B = arrays()
    assert list(model.fit(X, {"out_a": A, "out_b": B}, verbose=0).history) == ["loss", "out_a_loss", "out_b_loss"]
    model.compile(optimizer="sgd", loss={"out_a": "mse", "out_b": "mse"}, metrics={"out_a": "mae"},
                  loss_weights={"out_b": 2.0})
    logs = model.evaluate(X, [A, B], verbose=0, return_dict=True)
    assert set(logs) == {"loss", "out_a_loss", "out_b_loss", "out_a_mae"}
    assert logs["loss"] == pytest.approx(logs["out_a_loss"] + 2.0 * logs["out_b_loss"], rel=1e-6)
    x = Input((4,), name="inp")
    h = Dense(3)(x)
    dict_model = Model(x, {"a": Dense(2)(h), "b": Dense(1)(h)})
    dict_model.compile(optimizer="sgd", loss={"a": "mse", "b": "mse"})
    assert set(dict_model.fit(X, {"a": A, "b": B}, verbose=0).history) == {"loss", "a_loss", "b_loss"}
    out = dict_model.predict(X, verbose=0)
    assert isinstance(out, dict) and out["a"].shape == (20, 2) and out["b"].shape == (20, 1)


def test_several_inputs_as_a_list_or_a_dict_by_input_name():
    npae.set_random_seed(0)
    a, b = Input((4,), name="left"), Input((2,), name="right")
    model = Model([a, b], Dense(2, name="o")(Concatenate()([a, b])))
    model.compile(optimizer="sgd", loss="mse")
    X, A, _ = arrays()
    np.testing.assert_array_equal(model.predict([X, A], verbose=0), model.predict({"right": A, "left": X}, verbose=0))
    assert model.evaluate([X, A], A, verbose=0) == pytest.approx(model.evaluate({"left": X, "right": A}, A, verbose=0))
    with pytest.raises(ValueError, match=r"the model has 2 inputs \['left', 'right'\]: give a list of 2"):
        model.predict(X, verbose=0)
    with pytest.raises(ValueError, match="'middle' is not an input of the model"):
        model.predict({"left": X, "middle": A}, verbose=0)
    with pytest.raises(ValueError, match="different numbers of samples"):
        model.predict([X, A[:5]], verbose=0)
    with pytest.raises(ValueError, match=r"expected x\['right'\] of shape \(n, 2\)"):
        model.predict([X, X], verbose=0)


def test_compile_refuses_what_does_not_fit_the_outputs():
    model = two_heads()
    with pytest.raises(ValueError, match="loss has 3 entries for a model with 2 outputs"):
        model.compile(optimizer="sgd", loss=["mse", "mse", "mse"])
    with pytest.raises(ValueError, match="loss names 'out_c', which is not an output"):
        model.compile(optimizer="sgd", loss={"out_c": "mse"})
    with pytest.raises(ValueError, match="metrics has 3 entries for a model with 2 outputs"):
        model.compile(optimizer="sgd", loss="mse", metrics=["mae", "mse", "mae"])
    with pytest.raises(ValueError, match="loss weight of 'out_b' must be a finite number"):
        model.compile(optimizer="sgd", loss="mse", loss_weights=[1.0, float("nan")])
    with pytest.raises(ValueError, match="no output has a loss"):
        model.compile(optimizer="sgd", loss=[None, None])
    model.compile(optimizer="sgd", loss="mse")
    X, A, B = arrays()
    with pytest.raises(ValueError, match=r"expected y\['out_b'\] of shape \(20, 1\)"):
        model.fit(X, [A, A], verbose=0)
    with pytest.raises(ValueError, match="give a list of 2 arrays or a dict by output name"):
        model.fit(X, A, verbose=0)


def test_callbacks_see_the_per_output_keys(tmp_path):
    model = two_heads()
    model.compile(optimizer="sgd", loss=["mse", "mse"])
    X, A, B = arrays()
    stop = EarlyStopping(monitor="val_out_b_loss", patience=0)
    model.fit(X, [A, B], epochs=5, validation_data=(X, [A, B]), verbose=0,
              callbacks=[stop, CSVLogger(str(tmp_path / "h.csv"))])
    header = (tmp_path / "h.csv").read_text().splitlines()[0].split(",")
    assert {"out_a_loss", "out_b_loss", "val_out_b_loss"} <= set(header)


# -- generators ------------------------------------------------------------------------------
def batches(X, Y, size):
    """A Python generator looping over the batches forever, as Keras programs write them."""
    while True:
        for s in range(0, len(X), size):
            yield X[s:s + size], Y[s:s + size]


@pytest.mark.parametrize("jit", [False, True])
def test_fit_on_a_generator_equals_fit_on_the_same_batches_of_arrays(jit):
    X, A, _ = arrays(24)
    npae.set_random_seed(0)
    on_arrays = npae.Sequential([Input((4,)), Dense(3, activation="relu"), Dense(2)])
    on_arrays.compile(optimizer="adam", loss="mse", jit_compile=jit)
    npae.set_random_seed(0)
    on_gen = npae.Sequential([Input((4,)), Dense(3, activation="relu"), Dense(2)])
    on_gen.compile(optimizer="adam", loss="mse", jit_compile=jit)
    h1 = on_arrays.fit(X, A, batch_size=8, epochs=3, shuffle=False, verbose=0)
    h2 = on_gen.fit(batches(X, A, 8), steps_per_epoch=3, epochs=3, verbose=0,
                    validation_data=batches(X, A, 12), validation_steps=2)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-6)
    for a, b in zip(on_arrays.get_weights(), on_gen.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6)
    assert h2.history["val_loss"][-1] == pytest.approx(on_gen.evaluate(X, A, verbose=0), rel=1e-5)
    assert on_gen.evaluate(batches(X, A, 6), steps=4, verbose=0) == pytest.approx(on_gen.evaluate(X, A, verbose=0),
                                                                                 rel=1e-5)
    np.testing.assert_allclose(on_gen.predict((x for x in (X[:10], X[10:])), verbose=0), on_gen.predict(X, verbose=0),
                               rtol=1e-6)


def test_a_list_of_batches_and_a_keras_style_sequence():
    X, A, B = arrays(24)
    model = two_heads()
    model.compile(optimizer="sgd", loss=["mse", "mse"])
    class Batches:  # an iterable that is not an iterator: iterated afresh every epoch
        def __iter__(self):
            return iter([(X[s:s + 8], [A[s:s + 8], B[s:s + 8]]) for s in (0, 8, 16)])

    hist = model.fit(Batches(), epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2 and set(hist.history) == {"loss", "out_a_loss", "out_b_loss"}

    class Sequence:  # Keras's PyDataset / utils.Sequence idiom: __len__ and __getitem__
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return X[8 * i:8 * i + 8], {"out_a": A[8 * i:8 * i + 8], "out_b": B[8 * i:8 * i + 8]}

    hist = model.fit(Sequence(), epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2


def test_a_generator_that_runs_out_stops_training_as_keras_does():
    X, A, _ = arrays(16)
    model = npae.Sequential([Input((4,)), Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    finite = ((X[s:s + 8], A[s:s + 8]) for s in (0, 8))  # two batches, then nothing
    with pytest.warns(UserWarning, match="the data ran out after 0 batches"):
        hist = model.fit(finite, steps_per_epoch=2, epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        once = ((X[s:s + 8], A[s:s + 8]) for s in (0, 8))
        with pytest.warns(UserWarning, match="ran out"):
            model.fit(once, epochs=2, verbose=0)


def test_generator_batches_are_checked_like_arrays():
    X, A, _ = arrays(16)
    model = npae.Sequential([Input((4,)), Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"expected y of shape \(8, 2\)"):
        model.fit(((X[:8], A[:8, :1]) for _ in range(3)), steps_per_epoch=2, verbose=0)
    with pytest.raises(NotImplementedError, match="sample weights"):
        model.fit(((X[:8], A[:8], np.ones(8)) for _ in range(3)), steps_per_epoch=2, verbose=0)
    with pytest.raises(ValueError, match="so y must not be given"):
        model.fit(batches(X, A, 8), A, steps_per_epoch=2, verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int"):
        model.fit(batches(X, A, 8), steps_per_epoch=0, verbose=0)
