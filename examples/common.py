"""What every example shares: its command line and the tutorial's data preparation.

The examples follow the Keras tutorial's programs line by line; only the imports change
(``keras`` -> ``npae``) and ``plt.show()`` becomes ``plt.savefig(...)`` so they run headless.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from npae.datasets import fashion_mnist, mnist  # noqa: E402


def parse_args(description: str, epochs: int) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs, help=f"default {epochs}, as in the tutorial")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training and test images")
    p.add_argument("--out", default="figures", help="folder for the figures")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    return args


def load(args, images: bool = False):
    """The tutorial's preparation: scale to [0, 1], flatten to 784 (or shape to 28x28x1)."""
    source = mnist if args.dataset == "mnist" else fashion_mnist
    (x_train, _), (x_test, y_test) = source.load_data()
    x_train = x_train[: args.limit].astype("float32") / 255.0
    x_test, y_test = x_test[: args.limit].astype("float32") / 255.0, y_test[: args.limit]
    shape = (28, 28, 1) if images else (int(np.prod(x_train.shape[1:])),)
    return x_train.reshape((len(x_train), *shape)), x_test.reshape((len(x_test), *shape)), y_test
