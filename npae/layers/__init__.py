"""Layers with Keras's names, defaults and weight layouts (channels-last images)."""

from ..graph import Input
from .base import Layer
from .conv import Conv2D, Convolution2D
from .core import Activation, Dense, Flatten, InputLayer, ReLU, Reshape
from .pooling import MaxPool2D, MaxPooling2D, UpSampling2D

__all__ = [
    "Input", "Layer", "InputLayer", "Dense", "Activation", "ReLU", "Flatten", "Reshape",
    "Conv2D", "Convolution2D", "MaxPooling2D", "MaxPool2D", "UpSampling2D",
]
