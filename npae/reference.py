"""The reference path: one batch through a model's layers and back, in NumPy, nothing else.

``compile(..., jit_compile=False)`` runs every batch of ``fit``, ``evaluate`` and ``predict``
here; the fast path (:mod:`npae.fast`) must give the same numbers. One training step, for a
model of layers L1 ... Lk, a batch x and targets y:

    forward   h0 = x;  h_i, cache_i = L_i.forward(h_{i-1}, training=True)
              (the last layer stops at its logits where a sigmoid meets binary cross-entropy)
    loss      value, loss_cache = loss.forward(h_k, y)  +  each activity penalty P_i(h_i)
    backward  g = loss.backward(loss_cache)             dL/dh_k
              for i = k .. j:  g += dP_i/dh_i;   g, grads_i = L_i.backward(g, cache_i)
              (j: the lowest layer with trainable weights, nothing below it learns; a layer
              used twice in the chain gets the sum of its two grads)

then the model's optimizer updates every weight from its gradient. The caches live in this
function's locals, never on the layers: two threads can run one model.
"""

from __future__ import annotations

import numpy as np

from .functional import activations
from .functional import optimizers as reference_ops
from .layers.base import Layer, param_key
from .losses import Loss

__all__ = ["ReferencePath"]


class ReferencePath:
    """Runs a chain of layers and a loss on the reference path.

    Parameters
    ----------
    layers : the layers in order (the input layer left out; a shared layer appears each time it
        is applied).
    loss : the loss on the last layer's output, or None (prediction only).
    logits : the last layer stops before its activation and ``loss`` takes its logits (a final
        sigmoid fused into binary cross-entropy).
    """

    def __init__(self, layers: list[Layer], loss: Loss | None = None, logits: bool = False):
        self.layers, self.loss, self.logits = list(layers), loss, logits

    def forward(self, x: np.ndarray, training: bool = False, logits: bool | None = None
                ) -> tuple[np.ndarray, list, list[np.ndarray]]:
        """(output, every layer's cache, every layer's output) for one batch x; with ``logits``
        (default: as the path was made) the last layer stops before its activation."""
        logits = self.logits if logits is None else logits
        caches, outputs, last = [], [], len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if logits and i == last:
                x, cache = layer.forward(x, training, logits=True)
            else:
                x, cache = layer.forward(x, training)
            caches.append(cache)
            outputs.append(x)
        return x, caches, outputs

    def _objective(self, x, y, training):
        out, caches, outputs = self.forward(x, training)
        value, loss_cache = self.loss.forward(out, y)
        for layer, h in zip(self.layers, outputs):
            if layer.activity_regularizer is not None:
                value += layer.activity_regularizer.penalty(h)
        return value, caches, outputs, loss_cache

    def _copy_output(self, last: np.ndarray, output: np.ndarray | None) -> None:
        """output[...] = the model's output, from the last layer's (its logits where the path
        stops there: the sigmoid is applied here, for metrics)."""
        if output is not None:
            output[...] = activations.sigmoid(last) if self.logits else last

    def loss_value(self, x: np.ndarray, y: np.ndarray, training: bool = False,
                   output: np.ndarray | None = None) -> float:
        """The loss plus every activity penalty for one batch; with ``output`` (the shape of y)
        the model's output for the batch is written there too."""
        value, _, outputs, _ = self._objective(x, y, training)
        self._copy_output(outputs[-1], output)
        return value

    def gradients(self, x: np.ndarray, y: np.ndarray, grads: dict[str, np.ndarray],
                  output: np.ndarray | None = None) -> float:
        """One forward and backward pass in training mode; writes dL/dw into ``grads[key]`` for
        every key it holds (keys as :func:`param_key`; a frozen layer's are left out) and returns
        the loss, penalties included; with ``output`` (the shape of y) the model's output for
        the batch (training mode, before the update) is written there too."""
        value, caches, outputs, loss_cache = self._objective(x, y, True)
        self._copy_output(outputs[-1], output)
        g = self.loss.backward(loss_cache)
        total: dict[str, np.ndarray] = {}
        # nothing below the lowest layer with trainable weights takes an update: stop there (a
        # frozen layer above it passes the gradient down; its own weights' gradients are dropped)
        lowest = next((i for i, layer in enumerate(self.layers) if layer.trainable_param_names()), len(self.layers))
        for i in range(len(self.layers) - 1, lowest - 1, -1):
            layer = self.layers[i]
            if layer.activity_regularizer is not None:
                g = g + layer.activity_regularizer.gradient(outputs[i])
            g, layer_grads = layer.backward(g, caches[i])
            for name, grad in layer_grads.items():
                key = param_key(layer, name)
                if key in grads:
                    total[key] = total[key] + grad if key in total else grad  # a shared layer: summed
        for key, grad in total.items():
            grads[key][...] = grad
        return value

    def step(self, optimizer, params: dict, grads: dict) -> None:
        """One optimizer update with the NumPy update functions (:mod:`npae.functional.optimizers`)."""
        optimizer.step(params, grads, reference_ops)

    def gather(self, src: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out <- src[idx] (a batch of the training set)."""
        if src.dtype == out.dtype:
            return np.take(src, idx, axis=0, out=out)
        out[...] = src[idx]
        return out

    def predict(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out[...] = the model's output for one batch x."""
        out[...] = self.forward(x, False, logits=False)[0]
        return out

    def kinks(self, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        """Every mask that changes where the training objective has no derivative at x (a relu's
        zero, a pool's winner, an L1 penalty's zero, a clip bound), for gradient checks."""
        _, caches, outputs, loss_cache = self._objective(x, y, True)
        masks = [m for layer, cache in zip(self.layers, caches) for m in layer.kinks(cache)]
        for layer, h in zip(self.layers, outputs):
            if layer.activity_regularizer is not None and (m := layer.activity_regularizer.kink(h)) is not None:
                masks.append(m)
        if (m := self.loss.kink(loss_cache)) is not None:
            masks.append(m)
        return masks
