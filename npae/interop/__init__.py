"""npae models to Keras 3 models and back, with their weights, names, frozen layers and compile
settings:

    to_keras(model, compile=False)          an npae Model or Sequential -> the same keras.Model
    from_keras(keras_model, compile=False)  a Keras Sequential or Functional model -> the npae model
    import_keras()                          Keras, imported with a backend that is installed
    choose_keras_backend()                  the backend import_keras uses (sets KERAS_BACKEND)

Both directions rebuild the graph layer call by layer call: several inputs and outputs (lists or
dicts, in the form given, under the same names), shared layers (one layer object called at
several places), nested models (a model used as a layer is converted once and called wherever
the original calls it; a Sequential stays a Sequential) and subclassed npae models (their traced
graph becomes a functional Keras model). Each leaf layer's ``get_weights()`` goes to its twin's
``set_weights()``: npae's layouts and weight order are Keras's. Layer names, dtypes (float32 or
float64), activations, activity regularizers (L1, L2) and ``trainable`` flags carry over; so do
the compile settings with ``compile=True``, but not the optimizer's state.

The layers: InputLayer, Dense, Conv2D, Conv2DTranspose, MaxPooling2D, UpSampling2D,
BatchNormalization, Dropout, SpatialDropout2D, GaussianNoise, Flatten, Reshape, Activation, ReLU,
LeakyReLU, Softmax, Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate. Anything npae cannot represent is a
:class:`ConversionError` naming the layer and the argument (a layer class npae lacks, a Lambda or
custom layer, a subclassed Keras model, dilation, kernel regularizers, ...). The package:

    backend.py   which Keras backend, and importing Keras (only ever inside a function: ``import
                 npae`` does not import Keras)
    tables.py    what carries over, argument by argument, and the shared helpers
    writer.py    npae -> Keras (to_keras), compile settings included
    reader.py    Keras -> npae (from_keras), read through Keras's public API only
                 (``get_config()``, ``get_layer()``, ``get_weights()``, ``get_compile_config()``)

See docs/interop.md.
"""

from .backend import BACKENDS, INSTALL_HINT, choose_keras_backend, import_keras
from .reader import from_keras
from .tables import CARRIED, PASSED_THROUGH, ConversionError
from .writer import to_keras

__all__ = ["to_keras", "from_keras", "import_keras", "choose_keras_backend", "ConversionError", "BACKENDS",
           "INSTALL_HINT", "CARRIED", "PASSED_THROUGH"]
