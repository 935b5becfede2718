"""Keras's models, split as Keras splits its own:

    model.py       Model: the graph between inputs and outputs, layers, weights, freezing, summary
    trainer.py     Trainer (a base of Model): compile, the path, *_on_batch, fit / evaluate / predict
    objective.py   losses, loss weights and metrics per output, and their log names
    data.py        the data in the model's order; batches of arrays or of a generator
    sequential.py  Sequential
    files.py       description <-> layers, weights <-> model files
    loading.py     load_model, model_from_json, model_from_config
"""

from ..layers import Input
from .loading import load_model, model_from_config, model_from_json
from .model import Model
from .sequential import Sequential

__all__ = ["Model", "Sequential", "load_model", "Input", "model_from_config", "model_from_json"]
