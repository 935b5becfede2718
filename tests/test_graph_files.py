"""Graphs in files: .npz models, to_json / model_from_json and save_weights / load_weights keep a
graph's structure (nested models, shared layers, several inputs and outputs, dict outputs) and
its compile settings; files written by npae 0.3 (chains, format version 1) still load; a
description that does not hold together is one clear ModelFileError."""

import json
from pathlib import Path

import numpy as np
import pytest
from test_graphs import BUILDERS, data_for

import npae
from npae.models import load_model, model_from_json
from npae.saving import ModelFileError

V1 = Path(__file__).parent / "data" / "v1"


def outputs_of(pred):
    return list(pred.values()) if isinstance(pred, dict) else pred if isinstance(pred, list) else [pred]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_saved_graph_loads_predicts_and_trains_on_as_the_original(name, tmp_path):
    npae.set_random_seed(0)
    model = BUILDERS[name]()
    x, y = data_for(model, n=8)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert loaded.metrics_names == model.metrics_names and loaded.output_names == model.output_names
    for a, b in zip(outputs_of(model.predict(x, verbose=0)), outputs_of(loaded.predict(x, verbose=0))):
        np.testing.assert_array_equal(a, b)
    # the optimizer's state came along: one more step is the same step
    model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_json_and_weights_files_of_a_graph(name, tmp_path):
    npae.set_random_seed(0)
    model = BUILDERS[name]()
    x, _ = data_for(model, n=4)
    rebuilt = model_from_json(model.to_json())
    assert rebuilt.optimizer is None and rebuilt.count_params() == model.count_params()
    rebuilt.set_weights(model.get_weights())
    for a, b in zip(outputs_of(model.predict(x, verbose=0)), outputs_of(rebuilt.predict(x, verbose=0))):
        np.testing.assert_array_equal(a, b)
    model.save_weights(tmp_path / "w.npz")
    npae.set_random_seed(1)
    fresh = BUILDERS[name]()
    fresh.load_weights(tmp_path / "w.npz")
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nested_models_keep_sharing_their_layers_after_loading(tmp_path):
    npae.set_random_seed(0)
    model = BUILDERS["nested"]()
    model.save(tmp_path / "ae.npz")
    loaded = load_model(tmp_path / "ae.npz")
    encoder = loaded.get_layer("encoder")
    assert type(encoder).__name__ == "Model" and len(encoder.outputs) == 3
    x, y = data_for(loaded, n=8)
    before = encoder.predict(x, verbose=0)[2]
    loaded.fit(x, y, epochs=2, verbose=0)
    assert not np.allclose(encoder.predict(x, verbose=0)[2], before)  # trained through the outer model


def test_load_weights_refuses_another_graph(tmp_path):
    npae.set_random_seed(0)
    BUILDERS["unet_like"]().save_weights(tmp_path / "u.npz")
    with pytest.raises(ModelFileError, match="holds a different architecture"):
        BUILDERS["pooled_branches"]().load_weights(tmp_path / "u.npz")


# -- files of npae 0.3 -----------------------------------------------------------------------
V1_NAMES = sorted(p.name[:-4] for p in V1.glob("*.npz") if not p.name.endswith(".weights.npz"))


def test_the_version_1_fixtures_are_there():
    assert V1_NAMES == ["convolutional", "denoising", "sequential", "shared_twice", "sparse", "transposed"]


@pytest.mark.parametrize("name", V1_NAMES)
def test_files_written_by_npae_0_3_still_load_and_predict_the_same(name):
    manifest = json.loads((V1 / "manifest.json").read_text())[name]
    x, want = np.load(V1 / f"{name}.x.npy"), np.load(V1 / f"{name}.pred.npy")
    model = load_model(V1 / f"{name}.npz")
    assert model.count_params() == manifest["params"]
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    assert model.optimizer is not None and model.optimizer.iterations > 0
    assert set(model.metrics_names) == set(manifest["evaluate"])
    rebuilt = model_from_json((V1 / f"{name}.json").read_text())
    rebuilt.load_weights(V1 / f"{name}.weights.npz")
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    model.fit(x, model.predict(x, verbose=0), epochs=1, verbose=0)  # and it trains on


# -- descriptions that do not hold together ----------------------------------------------------
def saved(tmp_path):
    npae.set_random_seed(0)
    model = BUILDERS["two_in_two_out"]()
    model.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as f:
        return {k: f[k] for k in f.files}


def rewrite(tmp_path, change):
    arrays = saved(tmp_path)
    config = json.loads(str(arrays["npae_config"]))
    change(config)
    arrays["npae_config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


def set_node(config, i, **entry):
    config["nodes"][i].update(entry)


@pytest.mark.parametrize("change, message", [
    (lambda c: set_node(c, 2, args=[[5, 0]]), r"does not name an earlier node"),
    (lambda c: set_node(c, 2, args=[[0, 3]]), r"node 0 has no output 3"),
    (lambda c: set_node(c, 2, layer=99), r"'layer' must name a layer"),
    (lambda c: set_node(c, 2, model=0), r"'model' must name an earlier model"),
    (lambda c: set_node(c, 5, args=[[0, 0]]), r"shared is applied to shapes \(5,\) and \(6,\)"),
    (lambda c: set_node(c, 4, args=[[0, 0]]), r"entry .weight_2. has shape \(3, 5\), expected \(6, 5\)"),
    (lambda c: c.update(outputs=[[99, 0]]), r"does not name an earlier node"),
    (lambda c: c["layers"].pop(), r"'layer' must name a layer"),
    (lambda c: c.update(nodes="all"), r"'nodes' must be a list"),
    (lambda c: c["nodes"][0].update(args=[[0, 0]]), r"does not name an earlier node"),
])
def test_a_graph_description_that_does_not_hold_together_is_one_clear_error(tmp_path, change, message):
    path = rewrite(tmp_path, change)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_a_description_nested_thousands_deep_is_one_clear_error(tmp_path):
    path = tmp_path / "deep.npz"
    arrays = saved(tmp_path)
    text = str(arrays["npae_config"])
    arrays["npae_config"] = np.array(text[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}")
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match="nests values too deeply"):
        load_model(path)
    with pytest.raises(ValueError, match="nests values too deeply"):
        model_from_json('{"format": "npae.model", "config": ' + "[" * 100_000 + "]" * 100_000 + "}")
