"""npae.interop: npae models to Keras 3 and back. For models covering every layer npae has (the
tutorial's chain autoencoders, a U-Net, two inputs and two outputs in list and dict form with a
shared layer, nested models, Sequentials in a Sequential, frozen layers, every activation,
BatchNormalization variants, activity regularizers, float64, a subclassed model), the Keras twin
predicts what npae predicts, holds the same weights, names and classes, and comes back as the
same npae model; Keras-built models come to npae and back the same way; what npae cannot
represent is refused with an error naming the layer and the argument; compile settings carry
over (evaluate gives the same losses); and the Keras backend is chosen as documented.

Each model is converted once (module-scoped caches): building Keras models is slow."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import npae
from npae import autoencoders, interop, regularizers
from npae.models import Model, Sequential

if importlib.util.find_spec("keras") is not None:
    interop.choose_keras_backend()  # (before Keras's first import: CI runs with KERAS_BACKEND unset)
keras = pytest.importorskip("keras", reason=f"npae.interop needs Keras 3: {interop.INSTALL_HINT}")
K = keras.layers
L = npae.layers
pytestmark = [  # (Keras's own noise: its variables' __array__, and JAX without jax_enable_x64 on float64)
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64:UserWarning"),
]


# -- helpers --------------------------------------------------------------------------------------
def flat(outputs, model) -> list:
    """Outputs (an array, a list or a dict) in the model's output order."""
    if isinstance(outputs, dict):
        return [np.asarray(outputs[k]) for k in model.output_names]
    return [np.asarray(o) for o in outputs] if isinstance(outputs, list) else [np.asarray(outputs)]


def assert_close(got: list, want: list, tol: float = 1e-4) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        scale = max(1.0, float(np.max(np.abs(w))))
        assert float(np.max(np.abs(g.astype(np.float64) - w))) <= tol * scale


def tree(model) -> list:
    """Each layer's class (a nested model as Functional or Sequential, with its own tree) and name."""
    out = []
    for layer in model.layers:
        kind = type(layer).__name__
        if hasattr(layer, "layers") and callable(getattr(layer, "get_weights", None)):
            out.append(("Sequential" if kind == "Sequential" else "Functional", layer.name, tree(layer)))
        else:
            out.append((kind, layer.name))
    return out


def weights_equal(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def npae_predict(model, x):
    model.jit_compile = False  # (the reference path: no kernels to compile here)
    return flat(model.predict(x, verbose=0), model)


def holds_float64(keras_model) -> bool:
    """Whether the backend holds float64 weights (JAX does only with jax_enable_x64)."""
    return keras_model.get_weights()[0].dtype == np.float64


# -- the npae models ------------------------------------------------------------------------------
def two_in_two_out(form: str):
    npae.set_random_seed(5)
    a, b = npae.Input((12,), name="a"), npae.Input((12,), name="b")
    shared = L.Dense(8, activation="tanh", name="shared")
    ha, hb = shared(a), shared(b)
    first = L.Dense(3, activation="sigmoid", name="first")(L.Subtract(name="sub")([ha, hb]))
    merged = L.Concatenate(name="cat")([L.Multiply(name="mul")([ha, hb]), L.Maximum(name="max")([ha, hb]),
                                        L.Minimum(name="min")([ha, hb]), L.Average(name="avg")([ha, hb])])
    h = L.Reshape((4, 8), name="reshape")(L.Dropout(0.3, name="drop")(merged))
    h = L.Dense(8, name="squeeze")(L.Flatten(name="flat")(h))
    second = L.Dense(2, name="second")(L.Add(name="add")([h, shared(L.Dense(12, name="widen")(ha))]))
    if form == "dict":
        return Model({"a": a, "b": b}, {"first": first, "second": second}, name="two_dict")
    return Model([a, b], [first, second], name="two_list")


def nested():
    npae.set_random_seed(6)
    x = npae.Input((20,), name="vae_input")
    h = L.Dense(12, activation="relu", name="enc_hidden")(x)
    mu, logvar = L.Dense(4, name="mu")(h), L.Dense(4, name="logvar")(h)
    z = L.Dense(4, activation="tanh", name="z")(L.Add(name="mu_plus")([mu, logvar]))
    encoder = Model(x, [mu, logvar, z], name="encoder")
    c = npae.Input((4,), name="code")
    decoder = Model(c, L.Dense(20, activation="sigmoid", name="dec_out")(L.Dense(12, activation="relu",
                                                                                    name="dec_hidden")(c)),
                    name="decoder")
    y = npae.Input((20,), name="x")
    return Model(y, decoder(encoder(y)[1]), name="vae")


def sequentials():
    npae.set_random_seed(7)
    inner1 = Sequential([npae.Input((10,), name="in1"), L.Dense(8, name="s_dense1"), L.LeakyReLU(0.1, name="lrelu")],
                        name="block1")
    inner2 = Sequential([L.Dense(6, activation="elu", name="s_dense2"), L.Activation("softplus", name="soft")],
                        name="block2")
    inner2.build((None, 8))
    return Sequential([npae.Input((10,), name="seq_in"), inner1, inner2, L.Dense(3, name="s_out")], name="outer")


def frozen():
    model, encoder, _ = autoencoders.transposed(filters=(4, 8), noise=0.1, seed=8)
    encoder.trainable = False  # (the encoder's layers are the autoencoder's: frozen there too)
    model.layers[-1].trainable = False
    return model


def activations():
    npae.set_random_seed(9)
    x = npae.Input((6,), name="act_in")
    h = x
    for name in ("linear", "relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "silu", "softmax"):
        h = L.Dense(6, activation=name, name=f"d_{name}")(h)
    h = L.Activation("softmax", name="a_softmax")(L.Softmax(name="softmax_layer")(h))
    h = L.Activation("tanh", name="a_tanh")(L.ReLU(name="relu_layer")(h))
    return Model(x, L.LeakyReLU(negative_slope=0.05, name="lrelu_layer")(L.Activation("swish", name="a_swish")(h)),
                 name="activations")


def batchnorm():
    npae.set_random_seed(10)
    x = npae.Input((8, 8, 3), name="bn_in")
    h = L.BatchNormalization(name="bn_default")(x)
    h = L.BatchNormalization(axis=1, momentum=0.9, epsilon=1e-2, name="bn_rows")(h)
    h = L.Conv2D(4, 3, padding="same", use_bias=False, name="bn_conv")(h)
    h = L.BatchNormalization(center=False, name="bn_nocenter")(h)
    h = L.BatchNormalization(scale=False, name="bn_noscale")(L.Flatten(name="bn_flat")(h))
    model = Model(x, L.Dense(5, name="bn_out")(h), name="batchnorm")
    rng = np.random.default_rng(1)  # (moving statistics that are not the initial 0 and 1)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if k == "moving_variance" else rng.normal(0, 0.5, w.shape)
                               for w, k in zip(layer.get_weights(), [k for k in layer.param_order
                                                                     if k in layer.params])])
    return model


def classifier():
    npae.set_random_seed(14)
    x = npae.Input((6, 6, 2), name="cls_in")
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="cls_conv")(x)
    h = L.SpatialDropout2D(0.3, seed=2, name="cls_spatial")(h)
    h = L.SpatialDropout2D(0.1, name="cls_spatial_frozen", trainable=False)(h)
    h = L.Dense(8, name="cls_dense")(L.Flatten(name="cls_flat")(h))
    return Model(x, L.Softmax(name="cls_probs")(L.LeakyReLU(name="cls_lrelu")(h)), name="classifier")


def regularized():
    npae.set_random_seed(11)
    x = npae.Input((16,), name="reg_in")
    h = L.Dense(8, activation="relu", activity_regularizer=regularizers.l1(1e-3), name="code")(x)
    h = L.Dense(8, activation="relu", activity_regularizer=regularizers.l2(1e-2), name="l2_layer")(h)
    return Model(x, L.Dense(16, activation="sigmoid", name="reg_out")(h), name="regularized")


def float64():
    npae.set_random_seed(12)
    x = npae.Input((8,), dtype="float64", name="f64_in")
    h = L.Dense(6, activation="tanh", dtype="float64", name="f64_dense")(x)
    return Model(x, L.Dense(8, activation="sigmoid", dtype="float64", name="f64_out")(h), name="f64")


class Subclassed(Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.hidden = L.Dense(8, activation="relu", name="sub_hidden")
        self.out = L.Dense(12, activation="sigmoid", name="sub_out")

    def call(self, x):
        return self.out(self.hidden(x))


def subclassed():
    npae.set_random_seed(13)
    model = Subclassed()
    model.build((None, 12))
    return model


def unet():
    if hasattr(autoencoders, "unet"):
        return autoencoders.unet(filters=(4, 8), seed=4)[0]
    npae.set_random_seed(4)  # (the same graph: Add and Concatenate skips, strided Conv2DTranspose)
    x = npae.Input((28, 28, 1), name="unet_input")
    c1 = L.Conv2D(4, 3, activation="relu", padding="same")(x)
    c2 = L.Conv2D(8, 3, activation="relu", padding="same")(L.MaxPooling2D()(c1))
    code = L.Conv2D(8, 3, activation="relu", padding="same")(L.MaxPooling2D()(c2))
    up2 = L.Conv2DTranspose(8, 3, strides=2, activation="relu", padding="same")(code)
    d2 = L.Conv2D(8, 3, activation="relu", padding="same")(L.Add()([up2, c2]))
    up1 = L.Conv2DTranspose(4, 3, strides=2, activation="relu", padding="same")(d2)
    d1 = L.Conv2D(4, 3, activation="relu", padding="same")(L.Concatenate()([up1, c1]))
    return Model(x, L.Conv2D(1, 3, activation="sigmoid", padding="same")(d1), name="unet")


BUILDERS = {
    "convolutional": lambda: autoencoders.convolutional(filters=(4, 2, 2), seed=1)[0],
    "transposed": lambda: autoencoders.transposed(filters=(4, 8), seed=2)[0],
    "denoising": lambda: autoencoders.denoising(filters=4, seed=3)[0],
    "unet": unet,
    "two_list": lambda: two_in_two_out("list"),
    "two_dict": lambda: two_in_two_out("dict"),
    "nested": nested,
    "sequentials": sequentials,
    "frozen": frozen,
    "activations": activations,
    "batchnorm": batchnorm,
    "regularized": regularized,
    "classifier": classifier,
    "float64": float64,
    "subclassed": subclassed,
}


def inputs_for(model):
    rng = np.random.default_rng(2)
    arrays = [rng.random((5, *t.shape[1:])).astype(model.dtype) for t in model.inputs]
    if isinstance(model.input, dict):
        return dict(zip(model.input, arrays))
    return arrays if isinstance(model.input, list) else arrays[0]


class Converted:
    """Each model of BUILDERS, its Keras twin and the npae model that comes back, made once."""

    def __init__(self):
        self.cache = {}

    def __getitem__(self, name):
        if name not in self.cache:
            model = BUILDERS[name]()
            twin = interop.to_keras(model)
            self.cache[name] = (model, twin, interop.from_keras(twin), inputs_for(model))
        return self.cache[name]


@pytest.fixture(scope="module")
def converted():
    return Converted()


# -- npae -> Keras -> npae ------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BUILDERS))
def test_to_keras_predicts_what_npae_predicts_with_the_same_weights_and_names(converted, name):
    model, twin, _, x = converted[name]
    want = npae_predict(model, x)
    got = flat(twin.predict(x, verbose=0), model)
    exact64 = name == "float64" and holds_float64(twin)
    # (float64 where the backend holds it; Keras 3.15's torch matmul rounds float64 through float32)
    assert_close(got, want, {"tensorflow": 1e-12}.get(keras.backend.backend(), 1e-6) if exact64 else 1e-4)
    if name != "float64" or exact64:
        assert weights_equal(twin.get_weights(), model.get_weights())
    # (a subclass's layers are the ones it assigned; its twin is a functional model, InputLayer first)
    assert tree(twin)[1 if name == "subclassed" else 0:] == tree(model) and twin.name == model.name
    assert list(getattr(twin, "output_names", model.output_names)) == model.output_names
    assert [w.shape for w in twin.trainable_weights] == [w.shape for w in model.trainable_weights]
    assert [w.shape for w in twin.non_trainable_weights] == [w.shape for w in model.non_trainable_weights]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_from_keras_of_to_keras_is_the_same_model(converted, name):
    model, twin, back, x = converted[name]
    assert tree(back) == tree(model if name != "subclassed" else twin)
    assert [(type(a).__name__, a.name, a.trainable) for a in back.leaf_layers()] == \
           [(type(b).__name__, b.name, b.trainable) for b in model.leaf_layers()]
    assert back.input_names == model.input_names and back.output_names == model.output_names
    assert type(back.input) is type(model.input) and type(back.output) is type(model.output)
    assert [layer.get_config() for layer in back.leaf_layers()] == [layer.get_config() for layer in model.leaf_layers()]
    if name == "float64" and not holds_float64(twin):
        assert back.dtype == np.float64
        return  # (JAX without jax_enable_x64 keeps the weights in float32)
    assert weights_equal(back.get_weights(), model.get_weights())
    for got, want in zip(npae_predict(back, x), npae_predict(model, x)):
        np.testing.assert_array_equal(got, want)


def test_nested_and_shared_layers_stay_one_object(converted):
    _, twin, back, _ = converted["nested"]
    assert [type(lyr).__name__ for lyr in twin.layers] == ["InputLayer", "Functional", "Functional"]
    encoder = twin.get_layer("encoder")
    assert len(encoder.outputs) == 3 and twin.get_layer("decoder").input_shape == (None, 4)
    assert isinstance(back.get_layer("encoder"), Model) and len(back.get_layer("encoder").outputs) == 3
    _, twin, back, _ = converted["two_list"]
    shared = twin.get_layer("shared")
    assert sum(1 for lyr in twin.layers if lyr is shared) == 1 and len(back.get_layer("shared").get_weights()) == 2
    _, twin, back, _ = converted["sequentials"]
    assert isinstance(twin, keras.Sequential) and isinstance(twin.get_layer("block1"), keras.Sequential)
    assert isinstance(back, Sequential) and isinstance(back.get_layer("block2"), Sequential)


def test_frozen_layers_stay_frozen(converted):
    model, twin, back, _ = converted["frozen"]
    flags = {lyr.name: lyr.trainable for lyr in model.leaf_layers()}
    assert not all(flags.values()) and any(flags.values())
    for name, trainable in flags.items():
        assert twin.get_layer(name).trainable == trainable
    assert {lyr.name: lyr.trainable for lyr in back.leaf_layers()} == flags


# -- Keras -> npae -> Keras -----------------------------------------------------------------------
def randomize(keras_model, seed: int) -> None:
    """Random weights (positive moving variances): the layers are built with cheap zeros."""
    rng = np.random.default_rng(seed)
    keras_model.set_weights([rng.uniform(0.5, 1.5, v.shape) if "variance" in v.path else rng.normal(0, 0.4, v.shape)
                             for v in keras_model.weights])


def keras_functional():
    z = {"kernel_initializer": "zeros"}
    x = keras.Input((8, 8, 2), name="kin")
    h = K.GaussianNoise(0.1, name="knoise")(x)
    h = K.Conv2D(4, 3, strides=2, padding="same", use_bias=False, name="kconv", **z)(h)
    h = K.LeakyReLU(negative_slope=0.1, name="klrelu")(K.BatchNormalization(name="kbn")(h))
    up = K.Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid", name="kdeconv", **z)(h)
    h = K.Concatenate(name="kcat")([up, x])
    pooled = K.UpSampling2D(name="kup")(K.MaxPooling2D(name="kpool")(h))
    h = K.Add(name="kadd")([h, pooled])
    h = K.Dense(6, activation="silu", name="kdense", **z)(K.Dropout(0.2, name="kdrop")(K.Flatten(name="kflat")(h)))
    model = keras.Model(x, K.Reshape((2, 3), name="kreshape")(h), name="keras_functional")
    randomize(model, 1)
    return model


def keras_sequential():
    z = {"kernel_initializer": "zeros"}
    block = keras.Sequential([K.Dense(6, activation="elu", name="kb_dense", **z), K.Dropout(0.1, name="kb_drop")],
                             name="kblock")
    xi = keras.Input((6,), name="kres_in")
    residual = keras.Model(xi, K.Subtract(name="ksub")([K.Dense(6, name="kres_dense", **z)(xi), xi]), name="kres")
    model = keras.Sequential([keras.Input((10,), name="kseq_in"), K.Dense(6, activation="tanh", name="kd1", **z),
                              block, residual, K.Activation("softplus", name="kact"), K.ReLU(name="krelu"),
                              K.Dense(4, activation="sigmoid", name="kd2", **z)], name="keras_sequential")
    randomize(model, 2)
    return model


def keras_nested_dict():
    z = {"kernel_initializer": "zeros"}
    ei = keras.Input((5,), name="kenc_in")
    # (three deep: kdict > kenc > kenc_seq, a Sequential without an Input, built by its call)
    h = keras.Sequential([K.Dense(4, activation="relu", name="kenc_h", **z)], name="kenc_seq")(ei)
    encoder = keras.Model(ei, {"zz": h, "aa": K.Dense(3, name="kenc_a", **z)(h)}, name="kenc")
    a, b = keras.Input((5,), name="ka"), keras.Input((5,), name="kb")
    ea, eb = encoder(a), encoder(b)
    shared = K.Dense(2, name="kshared", **z)
    out = K.Maximum(name="kmax")([shared(ea["aa"]), shared(eb["aa"])])
    tail = keras.Sequential([keras.Input((4,), name="ktail_in"), K.Dense(4, name="ktail_dense", **z)], name="ktail")
    model = keras.Model({"ka": a, "kb": b}, {"out": out, "code": K.Multiply(name="kmul")([ea["zz"], eb["zz"]]),
                                             "avg": tail(K.Average(name="kavg")([ea["zz"], eb["zz"]]))}, name="kdict")
    randomize(model, 3)
    return model


def keras_classifier():
    z = {"kernel_initializer": "zeros"}
    with pytest.warns(UserWarning, match="alpha"):  # (Keras 2's name, which Keras 3 still takes)
        lrelu = K.LeakyReLU(alpha=0.2, name="kc_lrelu")
    model = keras.Sequential([keras.Input((6, 6, 3), name="kc_in"), K.Conv2D(4, 3, name="kc_conv", **z),
                              K.SpatialDropout2D(0.25, seed=3, name="kc_spatial"), lrelu, K.Flatten(name="kc_flat"),
                              K.Dense(5, activation="softmax", name="kc_dense", **z), K.Softmax(name="kc_softmax")],
                             name="keras_classifier")
    randomize(model, 4)
    return model


KERAS_BUILDERS = {"functional": keras_functional, "sequential": keras_sequential, "nested_dict": keras_nested_dict,
                  "classifier": keras_classifier}


@pytest.fixture(scope="module")
def from_keras_models():
    made = {}
    for name, build in KERAS_BUILDERS.items():
        km = build()
        model = interop.from_keras(km)
        made[name] = (km, model, interop.to_keras(model), inputs_for(model))
    return made


@pytest.mark.parametrize("name", list(KERAS_BUILDERS))
def test_from_keras_predicts_what_keras_predicts(from_keras_models, name):
    km, model, again, x = from_keras_models[name]
    assert_close(npae_predict(model, x), flat(km.predict(x, verbose=0), model))
    assert weights_equal(model.get_weights(), km.get_weights()) and model.name == km.name
    # (Keras walks a dict of outputs in sorted key order, npae in the dict's order: for "out", "code",
    # "avg" the layers at equal depth come in another order)
    assert (sorted if name == "nested_dict" else list)(tree(model)) == (sorted if name == "nested_dict" else list)(
        tree(km))
    # ... and back in Keras: the same model
    assert tree(again) == tree(km) and weights_equal(again.get_weights(), km.get_weights())
    assert again.get_config() == km.get_config()
    assert_close(flat(again.predict(x, verbose=0), model), flat(km.predict(x, verbose=0), model), 1e-6)


# -- refusals ----------------------------------------------------------------------------------
def refusal(build, match):
    with pytest.raises(interop.ConversionError, match=match):
        interop.from_keras(build())


def test_from_keras_refuses_what_npae_cannot_represent_naming_the_layer_and_argument():
    z = {"kernel_initializer": "zeros"}
    refusal(lambda: keras.Sequential([keras.Input((5, 3)), K.LSTM(4, name="lstm_7", recurrent_initializer="zeros",
                                                                  **z)]), r"layer 'lstm_7' \(LSTM\): npae has no LSTM")
    refusal(lambda: keras.Sequential([keras.Input((5, 3)), K.Conv1D(2, 3, name="c1d", **z)]),
            r"layer 'c1d' \(Conv1D\): npae has no Conv1D")
    refusal(lambda: keras.Sequential([keras.Input((3,)), K.Lambda(lambda t: t * 2, name="double")]),
            r"layer 'double' \(Lambda\): a Lambda layer")
    refusal(lambda: keras.Sequential([keras.Input((8, 8, 1)), K.Conv2D(2, 3, dilation_rate=2, name="conv2d_3", **z)]),
            r"layer 'conv2d_3' \(Conv2D\): dilation_rate=\(2, 2\)")
    refusal(lambda: keras.Sequential([keras.Input((3,)), K.Dense(2, kernel_regularizer=keras.regularizers.L2(0.01),
                                                                 name="dense_reg", **z)]),
            r"layer 'dense_reg' \(Dense\): kernel_regularizer=L2\(l2=0.01")
    refusal(lambda: keras.Sequential([keras.Input((3,)), K.Dense(2, activation="gelu", name="probs", **z)]),
            r"layer 'probs' \(Dense\): activation='gelu'")
    refusal(lambda: keras.Sequential([keras.Input((3, 4)), K.Softmax(axis=1, name="cols")]),
            r"model '.*': cols: axis=1 is not supported by npae \(only the last axis: -1, or 2 for inputs of shape "
            r"\(batch, 3, 4\)\)")
    refusal(lambda: keras.Sequential([keras.Input((4, 4, 2)), K.SpatialDropout2D(0.5, data_format="channels_first",
                                                                              name="sd_first")]),
            r"layer 'sd_first' \(SpatialDropout2D\): data_format='channels_first'")
    refusal(lambda: keras.Sequential([keras.Input((4, 4, 1)), K.UpSampling2D(interpolation="bilinear", name="bil")]),
            r"layer 'bil' \(UpSampling2D\): interpolation='bilinear'")

    class Custom(K.Layer):
        def call(self, x):
            return x

    refusal(lambda: keras.Sequential([keras.Input((3,)), Custom(name="mine")]), r"layer 'mine' \(Custom\): a custom")

    class Sub(keras.Model):
        def __init__(self):
            super().__init__(name="sub_model")
            self.dense = K.Dense(2, **z)

        def call(self, x):
            return self.dense(x)

    def subclassed_keras():
        model = Sub()
        model(np.ones((1, 3), np.float32))
        return model

    refusal(subclassed_keras, r"model 'sub_model' \(Sub\) is a subclassed Keras model: it has no graph to read.*"
                              r"Rebuild it with npae layers")
    with pytest.raises(ValueError, match="not built"):
        interop.from_keras(keras.Sequential([K.Dense(2)]))


def test_to_keras_refuses_what_keras_cannot_represent():
    class Doubler(L.Layer):
        def forward(self, x, training=False):
            return 2 * x, None

        def backward(self, dout, cache):
            return 2 * dout, {}

    x = npae.Input((3,))
    with pytest.raises(interop.ConversionError, match=r"layer 'twice' \(Doubler\): npae.interop converts npae's own"):
        interop.to_keras(Model(x, Doubler(name="twice")(x)))
    y = npae.Input((3,))
    odd = L.Dense(2, activation=npae.activations.Activation("elu", 0.5), name="odd_elu")(y)
    with pytest.raises(interop.ConversionError, match=r"layer 'odd_elu' \(Dense\): activation elu with alpha=0.5"):
        interop.to_keras(Model(y, odd))
    model = Model(y, L.Dense(2, name="fine")(y))
    model.compile(optimizer="sgd", loss="mse", metrics=[lambda t, p: np.mean(t - p)])
    with pytest.raises(interop.ConversionError, match="metric function"):
        interop.to_keras(model, compile=True)
    with pytest.raises(ValueError, match="to_keras: .*not been built"):
        interop.to_keras(Subclassed())
    img = npae.Input((4, 4, 2))
    noisy = L.SpatialDropout2D(0.5, activity_regularizer="l2", name="sd_reg")(img)
    with pytest.raises(interop.ConversionError, match=r"layer 'sd_reg' \(SpatialDropout2D\): Keras's SpatialDropout2D "
                                                      "takes no activity_regularizer"):
        interop.to_keras(Model(img, noisy))


def test_from_keras_reads_keras_2s_alpha_of_leaky_relu():
    # (Keras 3 writes negative_slope in its configs; a config with Keras 2's alpha is read as well)
    layer = K.LeakyReLU(negative_slope=0.2, name="old_lrelu")
    config = {k: v for k, v in layer.get_config().items() if k != "negative_slope"}
    layer.get_config = lambda: {**config, "alpha": 0.2}
    with pytest.warns(UserWarning, match="alpha is deprecated"):
        back = interop.from_keras(keras.Sequential([keras.Input((3,)), layer]))
    assert back.get_layer("old_lrelu").get_config()["negative_slope"] == 0.2


def test_initializers_carry_over_by_name_and_others_warn():
    model = keras.Sequential([keras.Input((3,)), K.Dense(2, kernel_initializer="he_normal", name="he"),
                              K.Dense(2, kernel_initializer="orthogonal", bias_initializer="ones", name="ortho")])
    with pytest.warns(UserWarning, match=r"layer 'ortho' \(Dense\): kernel_initializer=Orthogonal.*glorot_uniform"):
        back = interop.from_keras(model)
    assert back.get_layer("he").get_config()["kernel_initializer"] == "he_normal"
    assert back.get_layer("ortho").get_config()["bias_initializer"] == "ones"
    again = interop.to_keras(back)
    assert again.get_layer("he").get_config()["kernel_initializer"]["class_name"] == "HeNormal"


# -- compile settings -----------------------------------------------------------------------------
def evaluate_both(model, twin, x, y):
    model.jit_compile = False
    return model.evaluate(x, y, verbose=0, return_dict=True), twin.evaluate(x, y, verbose=0, return_dict=True)


@pytest.mark.parametrize("loss, tol", [("mse", 1e-5), ("mae", 1e-5), ("binary_crossentropy", 1e-4)])
def test_to_keras_compiles_the_same_objective(converted, loss, tol):
    model = converted["regularized"][0]  # (the activity penalties are part of the loss)
    model.compile(optimizer=npae.optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, centered=True), loss=loss,
                  metrics=["mae"])
    twin = interop.to_keras(model, compile=True)
    x = inputs_for(model)
    mine, theirs = evaluate_both(model, twin, x, x)
    assert set(mine) == set(theirs)
    for key in mine:
        assert abs(mine[key] - theirs[key]) <= tol
    opt = twin.optimizer.get_config()
    assert type(twin.optimizer).__name__ == "RMSprop" and opt["rho"] == 0.8 and opt["momentum"] == 0.5
    assert opt["centered"] and abs(opt["learning_rate"] - 0.01) < 1e-9


def test_to_keras_compiles_several_outputs_with_loss_weights_list_and_dict(converted):
    for name in ("two_list", "two_dict"):
        model, _, _, x = converted[name]
        names = model.output_names
        losses, weights = ["binary_crossentropy", "mse"], [1.0, 0.25]
        as_form = (lambda v, names=names: dict(zip(names, v))) if name == "two_dict" else list
        model.compile(optimizer=npae.optimizers.SGD(0.05, momentum=0.9, nesterov=True), loss=as_form(losses),
                      loss_weights=as_form(weights), metrics=as_form([["mae"], ["mse"]]))
        twin = interop.to_keras(model, compile=True)
        rng = np.random.default_rng(3)
        y = as_form([rng.random((5, 3)).astype(np.float32), rng.random((5, 2)).astype(np.float32)])
        mine, theirs = evaluate_both(model, twin, x, y)
        assert set(mine) == set(theirs) and "first_loss" in mine and "second_mse" in mine
        for key in mine:
            assert abs(mine[key] - theirs[key]) <= 1e-4 * max(1.0, abs(mine[key]))
        assert twin.optimizer.get_config()["nesterov"] and twin.optimizer.get_config()["momentum"] == 0.9


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_crossentropy_compiles_both_ways(converted, from_logits):
    model = converted["classifier"][0]
    loss = npae.losses.CategoricalCrossentropy(from_logits=True) if from_logits else "categorical_crossentropy"
    model.compile(optimizer=npae.optimizers.Adam(0.01), loss=loss, metrics=["categorical_crossentropy", "accuracy"])
    twin = interop.to_keras(model, compile=True)
    assert type(twin.loss).__name__ == "CategoricalCrossentropy" if from_logits else twin.loss == loss
    x = inputs_for(model)
    y = np.eye(8, dtype=np.float32)[np.random.default_rng(6).integers(0, 8, 5)]
    mine, theirs = evaluate_both(model, twin, x, y)
    assert set(mine) == set(theirs) == {"loss", "categorical_crossentropy", "accuracy"}
    for key in mine:
        assert abs(mine[key] - theirs[key]) <= 1e-5 * max(1.0, abs(mine[key])), key
    back = interop.from_keras(twin, compile=True)
    assert type(back.loss) is npae.losses.CategoricalCrossentropy and back.loss.from_logits == from_logits
    assert back.objective.metric_ids == model.objective.metric_ids
    km = converted["classifier"][1]  # (Keras's metric class, by its default name)
    km.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits),
               metrics=[keras.metrics.CategoricalCrossentropy(), keras.metrics.CategoricalAccuracy()])
    again = interop.from_keras(km, compile=True)
    assert again.objective.metric_ids == (("categorical_crossentropy", "categorical_accuracy"),)
    mine, theirs = evaluate_both(again, km, x, y)
    assert set(mine) == set(theirs) and all(abs(mine[k] - theirs[k]) <= 1e-5 * max(1.0, abs(mine[k])) for k in mine)


OPTIMIZERS = [
    (lambda m: m.SGD(learning_rate=0.05, momentum=0.9, nesterov=True), {"momentum": 0.9, "nesterov": True}),
    (lambda m: m.RMSprop(learning_rate=0.002, rho=0.8, momentum=0.1, epsilon=1e-6, centered=True),
     {"rho": 0.8, "momentum": 0.1, "epsilon": 1e-6, "centered": True}),
    (lambda m: m.Adam(learning_rate=0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-6),
     {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6}),
    (lambda m: m.Adadelta(learning_rate=0.5, rho=0.9, epsilon=1e-6), {"rho": 0.9, "epsilon": 1e-6}),
]


def test_from_keras_compiles_the_same_optimizer_loss_and_metrics(from_keras_models):
    km, _, _, x = from_keras_models["sequential"]
    y = np.random.default_rng(4).random((5, 4)).astype(np.float32)
    for make, expected in OPTIMIZERS:
        km.compile(optimizer=make(keras.optimizers), loss="mae", metrics=["mse"])
        model = interop.from_keras(km, compile=True)
        config = model.optimizer.get_config()
        assert config["class_name"] == type(km.optimizer).__name__
        assert config["config"]["learning_rate"] == pytest.approx(float(km.optimizer.learning_rate), rel=1e-7)
        assert {k: config["config"][k] for k in expected} == pytest.approx(expected)
    mine, theirs = evaluate_both(model, km, x, y)
    assert set(mine) == set(theirs) and all(abs(mine[k] - theirs[k]) <= 1e-5 for k in mine)
    km.compile(optimizer="adadelta", loss="binary_crossentropy")  # (Keras 3's learning rate: 0.001)
    model = interop.from_keras(km, compile=True)
    assert model.optimizer.learning_rate == pytest.approx(0.001)
    mine, theirs = evaluate_both(model, km, x, y)
    assert abs(mine["loss"] - theirs["loss"]) <= 1e-4
    km.compile(optimizer=keras.optimizers.Adam(amsgrad=True), loss="mse")
    with pytest.raises(interop.ConversionError, match="amsgrad=True"):
        interop.from_keras(km, compile=True)
    km.compile(optimizer="nadam", loss="mse")
    with pytest.raises(interop.ConversionError, match="optimizer Nadam is not supported"):
        interop.from_keras(km, compile=True)
    km.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(interop.ConversionError, match="loss 'sparse_categorical_crossentropy' is not supported"):
        interop.from_keras(km, compile=True)
    km.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    with pytest.raises(interop.ConversionError, match="loss categorical_crossentropy: .*label_smoothing=0.1"):
        interop.from_keras(km, compile=True)
    assert interop.from_keras(km).optimizer is None  # (compile=False: the settings stay behind)


def test_from_keras_compiles_several_outputs(from_keras_models):
    km, _, _, x = from_keras_models["nested_dict"]
    rng = np.random.default_rng(5)
    y = {"out": rng.random((5, 2)).astype(np.float32), "code": rng.random((5, 4)).astype(np.float32),
         "avg": rng.random((5, 4)).astype(np.float32)}
    km.compile(optimizer="sgd", loss={"out": "mse", "code": "mae", "avg": None},
               loss_weights={"out": 0.5, "code": 2.0, "avg": 1.0}, metrics={"out": ["mae"]})
    model = interop.from_keras(km, compile=True)
    mine, theirs = evaluate_both(model, km, x, y)
    assert set(mine) == set(theirs) and all(abs(mine[k] - theirs[k]) <= 1e-5 for k in mine)


# -- Keras's backend, and npae without Keras ------------------------------------------------------
@pytest.fixture
def no_backend_set(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    return tmp_path


def test_the_backend_is_the_first_installed_unless_one_is_configured(no_backend_set, monkeypatch):
    first = next(b for b in interop.BACKENDS if importlib.util.find_spec(b) is not None)
    assert interop.choose_keras_backend() == first and os.environ["KERAS_BACKEND"] == first
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert interop.choose_keras_backend() == "torch"  # (set by the user: kept, installed or not)
    monkeypatch.delenv("KERAS_BACKEND")
    (no_backend_set / "keras.json").write_text(json.dumps({"backend": "numpy"}))
    assert interop.choose_keras_backend() == "numpy" and "KERAS_BACKEND" not in os.environ
    # a keras.json naming a backend that is not installed (Keras writes "tensorflow" there itself)
    (no_backend_set / "keras.json").write_text(json.dumps({"backend": "not_a_backend"}))
    assert interop.choose_keras_backend() == first


def test_no_backend_or_no_keras_says_how_to_install(no_backend_set, monkeypatch):
    monkeypatch.setattr(interop.backend, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"none of tensorflow, jax, torch is installed: pip install npae\[keras\]"):
        interop.choose_keras_backend()
    monkeypatch.delitem(sys.modules, "keras")
    with pytest.raises(ImportError, match=r"Keras 3, which is not installed: pip install npae\[keras\]"):
        interop.import_keras()


def test_importing_npae_does_not_import_keras():
    code = "import sys, npae, npae.interop; assert 'keras' not in sys.modules, 'keras imported'"
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_backend_choice_works_in_a_fresh_process_without_keras_backend(tmp_path):
    code = ("import npae.interop as i; k = i.import_keras(); import os; "
            "print(k.backend.backend(), os.environ['KERAS_BACKEND'])")
    env = {**{k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}, "KERAS_HOME": str(tmp_path)}
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))  # (what Keras writes by itself)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    first = next(b for b in interop.BACKENDS if importlib.util.find_spec(b) is not None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [first, first]
