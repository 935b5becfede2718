"""How the files in this folder were made: model files written by npae 0.3 (main at 7b47160, the
last version whose files describe chains: format version 1), kept as test fixtures. The tests
(tests/test_graph_files.py) check that today's npae loads them and predicts what 0.3 predicted.

    git worktree add /tmp/npae-0.3 7b47160
    PYTHONPATH=/tmp/npae-0.3 python tests/data/v1/make_fixtures.py tests/data/v1
"""
import json
import sys

import numpy as np

import npae
from npae import autoencoders
from npae.layers import BatchNormalization, Dense, Dropout, Input
from npae.models import Model, Sequential

out = sys.argv[1]
rng = np.random.default_rng(0)
manifest = {}
def keep(name, model, x, y):
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, seed=0)
    model.save(f"{out}/{name}.npz")
    model.save_weights(f"{out}/{name}.weights.npz")
    with open(f"{out}/{name}.json", "w") as f:
        f.write(model.to_json())
    np.save(f"{out}/{name}.x.npy", x[:3])
    np.save(f"{out}/{name}.pred.npy", model.predict(x[:3], verbose=0))
    manifest[name] = {"params": model.count_params(), "evaluate": model.evaluate(x, y, verbose=0, return_dict=True)}
x_img = rng.random((8, 28, 28, 1)).astype(np.float32)
keep("convolutional", autoencoders.convolutional(seed=0)[0], x_img, x_img)
keep("denoising", autoencoders.denoising(filters=4, seed=0)[0], x_img, x_img)
keep("transposed", autoencoders.transposed(filters=(4, 8), seed=0)[0], x_img, x_img)
x = rng.random((8, 20)).astype(np.float32)
keep("sparse", autoencoders.sparse(encoding_dim=3, input_dim=20, seed=0)[0], x, x)
npae.set_random_seed(0)
i = Input((20,), name="inp")
d = Dense(20, activation="tanh", name="shared")
m = Model(i, Dense(20, activation="sigmoid", name="top")(d(d(i))), name="shared_twice")
m.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
keep("shared_twice", m, x, x)
s = Sequential([Input((20,)), Dense(6, activation="relu"), BatchNormalization(), Dropout(0.1),
                Dense(20, activation="sigmoid")], name="seq")
s.compile(optimizer="sgd", loss="binary_crossentropy")
keep("sequential", s, x, x)
json.dump(manifest, open(f"{out}/manifest.json", "w"), indent=1)
