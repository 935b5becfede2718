"""The variational autoencoder's Sampling layer: z = m + exp(v / 2) eps and its KL term, a loss a
layer adds to the objective (Keras's add_loss), on both paths and through gradient checks."""

import copy

import numpy as np
import pytest

import npae
from npae.functional import sampling
from npae.gradcheck import check_layer, check_model
from npae.layers import Dense, Input, Sampling
from npae.models import Model


def test_the_reparameterization_and_the_kl_term_by_their_definitions():
    rng = np.random.default_rng(0)
    m, v, eps = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    z, cache = sampling.forward(m, v, eps, kl_weight=0.5)
    np.testing.assert_allclose(z, m + np.sqrt(np.exp(v)) * eps, rtol=1e-12, atol=1e-15)
    kl = np.mean([-0.5 * np.sum(1 + v[n] - m[n] ** 2 - np.exp(v[n])) for n in range(5)])
    assert sampling.kl(cache) == pytest.approx(0.5 * kl, rel=1e-14)
    dz = rng.normal(size=(5, 3))
    dm, dv = sampling.backward(dz, cache)
    np.testing.assert_allclose(dm, dz + 0.5 * m / 5, rtol=1e-14)
    np.testing.assert_allclose(dv, dz * np.exp(v / 2) * eps / 2 + 0.5 * (np.exp(v) - 1) / 10, rtol=1e-12)


@pytest.mark.parametrize("kl_weight", [0.0, 1.0, 1 / 784])
def test_sampling_passes_a_float64_gradient_check_with_its_kl_term(kl_weight):
    layer = Sampling(kl_weight=kl_weight, seed=3)
    report = check_layer(layer, input_shape=[(4,), (4,)], batch_size=3)
    assert report.passed and [c.name for c in report.checks] == ["input 0", "input 1"]


def test_the_draws_are_seeded_and_fresh_each_call_in_training_and_prediction():
    x = [np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)]
    a, b = Sampling(seed=7), Sampling(seed=7)
    first = a(x)
    np.testing.assert_array_equal(first, b(x))  # one seed, one draw
    assert not np.array_equal(first, a(x))  # a new eps each call
    np.testing.assert_array_equal(a.forward(x, training=False)[0].shape, (2, 3))


def test_shapes_that_do_not_pair_are_refused():
    with pytest.raises(ValueError, match=r"z_mean and z_log_var must have one shape, got \(2,\) and \(3,\)"):
        Sampling()([Input((2,)), Input((3,))])
    with pytest.raises(TypeError, match="takes a list of tensors"):
        Sampling()(Input((2,)))


def vae(kl_weight=0.5):
    npae.set_random_seed(0)
    x = Input((8,), name="encoder_input")
    h = Dense(6, activation="relu")(x)
    z_mean, z_log_var = Dense(2, name="z_mean")(h), Dense(2, name="z_log_var")(h)
    z = Sampling(kl_weight=kl_weight, seed=1, name="z")([z_mean, z_log_var])
    encoder = Model(x, [z_mean, z_log_var, z], name="encoder")
    code = Input((2,), name="z_sampling")
    decoder = Model(code, Dense(8, activation="sigmoid")(Dense(6, activation="relu")(code)), name="decoder")
    model = Model(x, decoder(encoder(x)[2]), name="vae")
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model, encoder, decoder


def test_the_kl_term_is_part_of_loss_in_fit_and_evaluate():
    model, encoder, _ = vae(kl_weight=0.5)
    data = np.random.default_rng(0).random((16, 8)).astype(np.float32)
    sampler = model.get_layer("encoder").get_layer("z")
    state = copy.deepcopy(sampler.rng.bit_generator.state)
    total = model.evaluate(data, data, batch_size=16, verbose=0)
    sampler.rng.bit_generator.state = state  # the same eps again, to take the evaluation apart
    z_mean, z_log_var, z = encoder.predict(data, batch_size=16, verbose=0)
    recon = model.get_layer("decoder").predict(z, verbose=0)
    p = np.clip(recon.astype(np.float64), 1e-7, 1 - 1e-7)
    bce = -np.mean(data * np.log(p) + (1 - data) * np.log(1 - p))
    kl = np.mean(-0.5 * np.sum(1 + z_log_var - z_mean ** 2 - np.exp(z_log_var), axis=1))
    assert total == pytest.approx(bce + 0.5 * kl, rel=1e-4)


@pytest.mark.parametrize("jit", [False, True])
def test_a_vae_passes_a_float64_gradient_check(jit):
    model, _, _ = vae()
    data = np.random.default_rng(1).random((6, 8))
    report = check_model(model, data, data, jit_compile=jit)
    assert report.passed, report.table()
    assert len(report.checks) == len(model.trainable_weights)


def test_both_paths_train_a_vae_to_the_same_numbers():
    runs = []
    for jit in (False, True):
        model, _, _ = vae()
        model.astype("float64")
        model.jit_compile = jit
        data = np.random.default_rng(2).random((24, 8))
        history = model.fit(data, data, epochs=3, batch_size=8, shuffle=False, verbose=0)
        runs.append((history.history["loss"], model.get_weights()))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=0, atol=1e-10)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-10)


def test_a_vae_saves_and_loads_with_its_sampling_layer(tmp_path):
    model, _, _ = vae(kl_weight=0.25)
    model.save(tmp_path / "vae.npz")
    loaded = npae.load_model(tmp_path / "vae.npz")
    sampler = loaded.get_layer("encoder").get_layer("z")
    assert isinstance(sampler, Sampling) and sampler.kl_weight == 0.25 and sampler.has_loss


def test_the_vae_objective_is_bce_plus_the_weighted_kl_by_hand():
    # a decoder whose output does not depend on z: the reconstruction is the same whatever eps is
    npae.set_random_seed(0)
    x = Input((6,))
    z_mean, z_log_var = Dense(2)(x), Dense(2)(x)
    z = Sampling(kl_weight=0.3)([z_mean, z_log_var])
    out = Dense(6, activation="sigmoid", name="out")(npae.layers.Multiply()([z, npae.layers.Subtract()([z, z])]))
    model = Model(x, out)
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    data = np.random.default_rng(0).random((10, 6))
    w_m, b_m, w_v, b_v, _, b_out = model.get_weights()
    m, v = data @ w_m + b_m, data @ w_v + b_v
    p = 1 / (1 + np.exp(-b_out))  # the output is sigmoid(0 @ W + b) for every image
    bce = -np.mean(data * np.log(p) + (1 - data) * np.log(1 - p))
    kl = np.mean(-0.5 * np.sum(1 + v - m ** 2 - np.exp(v), axis=1))
    for jit in (False, True):
        model.jit_compile = jit
        assert model.evaluate(data, data, verbose=0) == pytest.approx(bce + 0.3 * kl, rel=1e-5)


def test_the_blog_and_keras_io_vaes_have_kerass_parameter_counts():
    from npae import autoencoders

    model, encoder, decoder = autoencoders.vae(seed=0)
    assert (encoder.count_params(), decoder.count_params()) == (201_988, 202_256)  # the Keras blog's
    assert [t.shape for t in encoder.outputs] == [(None, 2)] * 3 and model.output_shape == (None, 784)
    model, encoder, decoder = autoencoders.conv_vae(seed=0)
    assert (encoder.count_params(), decoder.count_params()) == (69_076, 65_089)  # keras-io's summaries
    assert model.get_layer("encoder").get_layer("z").kl_weight == pytest.approx(1 / 784)


def test_the_manifold_grid_is_the_gaussians_quantiles(tmp_path):
    from npae import autoencoders, plots

    grid = plots.manifold_grid(5)
    assert grid.shape == (25, 2) and grid[2, 0] == pytest.approx(0.0) and grid[0, 1] == pytest.approx(1.6448536)
    np.testing.assert_allclose(grid[:5, 0], -grid[:5, 0][::-1], atol=1e-12)  # symmetric about the prior's mean
    _, _, decoder = autoencoders.vae(seed=0)
    path = plots.plot_manifold(decoder, tmp_path / "vae_manifold.png", n=5)
    assert (tmp_path / "vae_manifold.png").stat().st_size > 1000 and path.endswith("manifold.png")
