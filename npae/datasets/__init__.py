"""MNIST and Fashion-MNIST: ``npae.datasets.mnist.load_data()`` returns what Keras's does."""

from . import fashion_mnist, mnist
from .download import DownloadError
from .idx import IDXError, read_idx
from .loader import DATASETS, DatasetNotFoundError, cache_dir, load, load_split
from .preprocess import add_noise, flatten, to_float, to_images

__all__ = ["mnist", "fashion_mnist", "load", "load_split", "read_idx", "IDXError", "DownloadError",
           "DatasetNotFoundError", "DATASETS", "cache_dir", "add_noise", "flatten", "to_float", "to_images"]
