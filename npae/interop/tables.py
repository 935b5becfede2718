"""What npae.interop carries over between npae and Keras, argument by argument, and the helpers
both directions share.

Each layer's constructor arguments have the same names in both libraries. :data:`CARRIED` lists
the ones that carry over for each class (their values converted: activations by name,
initializers by name, shapes as tuples); :data:`PASSED_THROUGH` lists the Keras arguments npae's
constructors know but implement only at Keras's "off" value (``dilation_rate=(1, 1)``,
``kernel_regularizer=None``, ...): from_keras hands them over, and npae's own check refuses any
other value; :data:`ALIASES` lists older Keras names npae's constructors take too (Keras 2's
``LeakyReLU(alpha=...)``). Every layer also carries its name, dtype, ``trainable`` flag and activity
regularizer (:data:`COMMON`), but for the Keras classes of :data:`NAME_AND_DTYPE_ONLY`, whose
constructors take only the name and dtype of those (their ``trainable`` flag is set afterwards).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ConversionError", "CARRIED", "PASSED_THROUGH", "ALIASES", "COMMON", "NAME_AND_DTYPE_ONLY", "TUPLES",
           "INITIALIZER_NAMES", "INITIALIZER_DEFAULTS", "ACTIVATIONS", "OPTIMIZER_ARGS", "LOSS_NAMES", "METRIC_CLASSES",
           "float32_clean", "Shown", "shown", "default_initializer", "form_of", "flat_list"]


class ConversionError(NotImplementedError):
    """A model uses something the other library cannot represent (the message names the layer and
    the argument)."""


# What each layer's constructor carries over, by Keras's argument names (npae's are the same).
CARRIED = {
    "Dense": ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer"),
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "activation", "use_bias", "kernel_initializer",
               "bias_initializer"),
    "Conv2DTranspose": ("filters", "kernel_size", "strides", "padding", "output_padding", "activation", "use_bias",
                        "kernel_initializer", "bias_initializer"),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "UpSampling2D": ("size",),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale", "beta_initializer", "gamma_initializer",
                           "moving_mean_initializer", "moving_variance_initializer"),
    "Dropout": ("rate", "noise_shape", "seed"),
    "SpatialDropout2D": ("rate", "seed"),
    "GaussianNoise": ("stddev", "seed"),
    "Flatten": (),
    "Reshape": ("target_shape",),
    "Activation": ("activation",),
    "ReLU": (),
    "LeakyReLU": ("negative_slope",),
    "Softmax": ("axis",),
    **{merge: () for merge in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")},
    "Concatenate": ("axis",),
}
REGULARIZED = ("kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint")
# Keras arguments npae's constructors know and accept only at Keras's "off" value (anything else is
# their NotImplementedError, which from_keras turns into a ConversionError naming the layer).
PASSED_THROUGH = {
    "Dense": (*REGULARIZED, "lora_rank"),
    "Conv2D": ("data_format", "dilation_rate", "groups", *REGULARIZED, "lora_rank"),
    "Conv2DTranspose": ("data_format", "dilation_rate", *REGULARIZED),
    "MaxPooling2D": ("data_format",),
    "UpSampling2D": ("data_format", "interpolation"),
    "Flatten": ("data_format",),
    "BatchNormalization": ("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint",
                           "synchronized", "renorm", "renorm_clipping", "renorm_momentum"),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "SpatialDropout2D": ("data_format",),
}
# Keras 2's argument names that Keras 3 and npae's constructors still take (from_keras hands them
# over; to_keras writes the Keras 3 name)
ALIASES = {"LeakyReLU": ("alpha",)}
COMMON = ("name", "dtype", "trainable", "activity_regularizer")  # every layer's, handled alike
NAME_AND_DTYPE_ONLY = ("SpatialDropout2D",)  # Keras constructors without trainable and activity_regularizer
TUPLES = ("kernel_size", "strides", "pool_size", "size", "output_padding", "target_shape", "noise_shape",
          "dilation_rate")  # (lists in a JSON config, tuples in the constructors)
# Keras's initializer classes by npae's names (npae's random_uniform and random_normal are Keras's
# RandomUniform and RandomNormal at these defaults only)
INITIALIZER_NAMES = {"GlorotUniform": "glorot_uniform", "GlorotNormal": "glorot_normal", "HeUniform": "he_uniform",
                     "HeNormal": "he_normal", "LecunUniform": "lecun_uniform", "LecunNormal": "lecun_normal",
                     "RandomUniform": "random_uniform", "RandomNormal": "random_normal", "Zeros": "zeros",
                     "Ones": "ones"}
INITIALIZER_DEFAULTS = {"RandomUniform": {"minval": -0.05, "maxval": 0.05},
                        "RandomNormal": {"mean": 0.0, "stddev": 0.05}}
ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "silu", "swish", "softmax")
# each optimizer's hyperparameters, the same names in both libraries
OPTIMIZER_ARGS = {"SGD": ("learning_rate", "momentum", "nesterov"),
                  "RMSprop": ("learning_rate", "rho", "momentum", "epsilon", "centered"),
                  "Adam": ("learning_rate", "beta_1", "beta_2", "epsilon"),
                  "Adadelta": ("learning_rate", "rho", "epsilon")}
LOSS_NAMES = {"MeanSquaredError": "mse", "MeanAbsoluteError": "mae", "BinaryCrossentropy": "binary_crossentropy",
              "CategoricalCrossentropy": "categorical_crossentropy"}
# Keras's metric classes npae has, by the name they log under (their default name)
METRIC_CLASSES = {"MeanSquaredError": "mean_squared_error", "MeanAbsoluteError": "mean_absolute_error",
                  "BinaryAccuracy": "binary_accuracy", "CategoricalAccuracy": "categorical_accuracy",
                  "BinaryCrossentropy": "binary_crossentropy", "CategoricalCrossentropy": "categorical_crossentropy"}


def float32_clean(value: float) -> float:
    """A float Keras stored as float32 (0.009999999776482582) as the number it was given (0.01)."""
    value = float(value)
    return float(str(np.float32(value))) if float(np.float32(value)) == value else value


class Shown:
    """A Keras object's config passed to npae's argument checks, shown briefly in their errors."""

    def __init__(self, spec):
        self.spec = spec

    def __eq__(self, other):
        return isinstance(other, Shown) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        config = self.spec.get("config") if isinstance(self.spec.get("config"), dict) else {}
        args = ", ".join(f"{k}={v!r}" for k, v in config.items() if v is not None)
        return f"{self.spec.get('class_name')}({args})"


def shown(value):
    """A Keras config value as npae's argument checks take it (and show it in their errors): a
    serialised Keras object as :class:`Shown`, a list as a tuple."""
    if isinstance(value, dict) and "class_name" in value:
        return Shown(value)
    return tuple(value) if isinstance(value, list) else value


def default_initializer(key: str) -> str:
    """The default of an ``*_initializer`` argument, in both libraries."""
    return {"kernel_initializer": "glorot_uniform", "gamma_initializer": "ones",
            "moving_variance_initializer": "ones"}.get(key, "zeros")


def form_of(structure, flat: list):
    """``flat`` (in npae's order of ``structure``'s tensors) in the form of ``structure``."""
    if isinstance(structure, dict):
        return dict(zip(structure, flat))
    return list(flat) if isinstance(structure, (list, tuple)) else flat[0]


def flat_list(structure) -> list:
    """The tensors of a model's inputs or outputs (one, a list or a dict), in order."""
    if isinstance(structure, dict):
        return list(structure.values())
    return list(structure) if isinstance(structure, (list, tuple)) else [structure]

