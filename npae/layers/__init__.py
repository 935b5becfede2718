"""Layers with Keras's names, defaults and weight layouts (channels-last images).

Each layer's forward and backward pass calls the NumPy operations of :mod:`npae.functional`;
nothing here imports Numba (the fast path, :mod:`npae.fast`, reads the layers, never the other
way round).
"""

from .activation import Activation, LeakyReLU, ReLU, Softmax
from .base import Layer
from .conv import Conv2D, Convolution2D
from .conv_transpose import Conv2DTranspose, Convolution2DTranspose
from .core import Dense, Input, InputLayer
from .merging import (
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
    maximum,
    minimum,
    multiply,
    subtract,
)
from .noise import Dropout, GaussianNoise, SpatialDropout2D
from .normalization import BatchNormalization
from .pooling import MaxPool2D, MaxPooling2D, UpSampling2D
from .reshaping import Flatten, Reshape
from .sampling import Sampling

__all__ = [
    "Input", "Layer", "InputLayer", "Dense", "Activation", "ReLU", "LeakyReLU", "Softmax", "Flatten", "Reshape",
    "Conv2D", "Convolution2D", "Conv2DTranspose", "Convolution2DTranspose", "MaxPooling2D", "MaxPool2D",
    "UpSampling2D", "BatchNormalization", "Dropout", "SpatialDropout2D", "GaussianNoise", "deserialize", "serialize",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "Sampling",
]

LAYER_CLASSES = {cls.__name__: cls for cls in (Dense, Activation, ReLU, LeakyReLU, Softmax, Flatten, Reshape, Conv2D,
                                               Conv2DTranspose, MaxPooling2D, UpSampling2D, BatchNormalization,
                                               Dropout, SpatialDropout2D, GaussianNoise, Add, Subtract, Multiply,
                                               Average, Maximum, Minimum, Concatenate, Sampling)}


def serialize(layer: Layer) -> dict:
    """{"class_name": ..., "config": ...}, what :func:`deserialize` reads back."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(spec: dict, custom_objects: dict | None = None) -> Layer:
    """The layer a :func:`serialize` dict describes; ``custom_objects`` maps other class names to
    Layer subclasses."""
    classes = {**LAYER_CLASSES, "InputLayer": InputLayer, **(custom_objects or {})}
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        raise ValueError(f"a layer is described as {{'class_name': ..., 'config': {{...}}}}, got {spec!r}")
    cls = classes.get(spec.get("class_name"))
    if cls is None:
        raise ValueError(f"unknown layer class {spec.get('class_name')!r}: expected one of {sorted(classes)}")
    return cls.from_config(spec["config"])
