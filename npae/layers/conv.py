"""2-D convolution (cross-correlation, as in Keras), channels-last: im2col + one GEMM, or direct.

Shapes: x (N, H, W, Cin), kernel (kh, kw, Cin, Cout), bias (Cout,), z and a (N, Ho, Wo, Cout).
With K = kh*kw*Cin, im2col turns x into the patch matrix P (N*Ho*Wo, K) whose column order
(di, dj, c) matches the kernel's memory order, so the kernel is used as W = kernel.reshape(K, Cout)
without any transpose:

    forward:  Z = P W + bias                     (N*Ho*Wo, Cout)
    backward: dW = P^T G                         (K, Cout)  -> reshaped to (kh, kw, Cin, Cout)
              dbias = sum over rows of G         (Cout,)
              dP = G W^T;  dx = col2im(dP)       (N, H, W, Cin)   (scatter-add of the patches)

Output size per axis (see ``kernels.window_geometry``): 'valid' floor((n - k) / s) + 1,
'same' ceil(n / s) with TensorFlow's padding (odd pixel at the bottom/right).

"Direct" mode, for stride 1 with one input channel or fewer output than input channels (the
tutorial's first and last convolutions, and its 16 -> 8 one): no patch matrix at all. ``kernels.conv2d_s1`` runs the
convolution on zero-padded planes, and the backward pass is two more such sums:

    dW[a, b, c, o] = sum over (n, i, j) of x[n, i - pt + a, j - pl + b, c] g[n, i, j, o]
    dx = conv2d_s1(g, W_flipped) with padding (kh-1-pt, kw-1-pl),
         W_flipped[a', b', o, c] = kernel[kh-1-a', kw-1-b', c, o]   (the adjoint of a correlation
         is a correlation with the kernel turned 180 degrees and its channel axes swapped)
"""

from __future__ import annotations

import numpy as np

from .. import initializers, kernels
from .base import Layer, to_pair

__all__ = ["Conv2D", "Convolution2D", "check_padding"]


def check_padding(padding) -> str:
    """'valid' | 'same' (any case) -> lower case; anything else is a clear error."""
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return padding.lower()


def image_geometry(layer, input_shape, window, strides, padding):
    """Validate an (H, W, C) input shape and return (ho, wo, pad_top, pad_left)."""
    if len(input_shape) != 3:
        raise ValueError(
            f"{layer.name}: expected input of shape (batch, height, width, channels), got (batch, "
            f"{', '.join(map(str, input_shape))})"
        )
    try:
        ho, pt, _ = kernels.window_geometry(input_shape[0], window[0], strides[0], padding)
        wo, pl, _ = kernels.window_geometry(input_shape[1], window[1], strides[1], padding)
    except ValueError as err:
        raise ValueError(f"{layer.name}: {err} (input shape {tuple(input_shape)})") from None
    return ho, wo, pt, pl


class Conv2D(Layer):
    """Keras's ``Conv2D(filters, kernel_size, strides=(1, 1), padding='valid', activation=None)``."""

    param_order = ("kernel", "bias")

    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid", activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 activity_regularizer=None, name=None, dtype=None, input_shape=None):
        if not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError(f"Conv2D: filters must be a positive int, got {filters!r}")
        super().__init__(name=name, dtype=dtype, activation=activation,
                         activity_regularizer=activity_regularizer, input_shape=input_shape)
        self.filters, self.use_bias = int(filters), bool(use_bias)
        self.kernel_size = to_pair(kernel_size, "kernel_size")
        self.strides = to_pair(strides, "strides")
        self.padding = check_padding(padding)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self._init_names = (kernel_initializer, bias_initializer)

    def compute_output_shape(self, input_shape):
        ho, wo, _, _ = image_geometry(self, input_shape, self.kernel_size, self.strides, self.padding)
        return (ho, wo, self.filters)

    def _create_params(self, input_shape, rng):
        kh, kw = self.kernel_size
        shape = (kh, kw, input_shape[2], self.filters)
        self.params["kernel"] = self.kernel_initializer(shape, self.dtype, rng)
        if self.use_bias:
            self.params["bias"] = self.bias_initializer((self.filters,), self.dtype, rng)
        self._geom = image_geometry(self, input_shape, self.kernel_size, self.strides, self.padding)

    def _window(self):
        ho, wo, pt, pl = self._geom
        return (*self.kernel_size, *self.strides, pt, pl, ho, wo)

    @property
    def direct_mode(self) -> bool:
        """Training: stride 1 with one input channel or fewer outputs than inputs runs
        ``kernels.conv2d_s1`` (no patch matrix). Measured per layer on the tutorial's shapes
        (forward + backward); elsewhere im2col + GEMM wins."""
        cin = self.input_shape[2]
        return self.strides == (1, 1) and (cin == 1 or self.filters < cin)

    @property
    def direct_inference_mode(self) -> bool:
        """Inference (``training=False``): the direct kernel also for up to 128 channel pairs. With
        no backward pass to pay for, it beats im2col + GEMM on the tutorial's 8->8 and 8->16 layers
        (e.g. 16x16 8->16 valid: 3.3 vs 5.5 ms per 256 images) but not on 32->32 (12.5 vs 5.0)."""
        return self.direct_mode or (self.strides == (1, 1) and self.input_shape[2] * self.filters <= 128)

    def forward_linear(self, x, training):
        kh, kw, cin, cout = self.params["kernel"].shape
        ho, wo, pt, pl = self._geom
        # the backward pass follows whichever way the forward pass went
        self._direct = self.direct_mode if training else self.direct_inference_mode
        if self._direct:
            self._x = x  # (N, H, W, Cin)
            z = self.result_buffer("z", (x.shape[0], ho, wo, cout), x.dtype)
            return kernels.conv2d_s1(x, self.params["kernel"], pt, pl, ho, wo, z).reshape(-1, cout)
        cols = self.workspace("cols", (x.shape[0] * ho * wo, kh * kw * cin), x.dtype)
        self._cols = kernels.im2col(x, *self._window(), cols)  # (N*Ho*Wo, K), reused buffer
        z = self.result_buffer("z", (cols.shape[0], cout), x.dtype)
        return np.matmul(self._cols, self.params["kernel"].reshape(-1, cout), out=z)  # (N*Ho*Wo, Cout)

    def backward_linear(self, g2):
        # g2 = dL/dz as (N*Ho*Wo, Cout); the base class has already taken dL/dbias from it
        kernel = self.params["kernel"]
        kh, kw, cin, cout = kernel.shape
        ho, wo, pt, pl = self._geom
        h, w, _ = self.input_shape
        if self._direct:
            n = self._x.shape[0]
            g4 = g2.reshape(n, ho, wo, cout)
            kernels.conv2d_s1_kernel_grad(self._x, g4, pt, pl, self.grads["kernel"])
            if not self.needs_input_grad:
                return None
            w_flip = np.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2))  # (kh, kw, Cout, Cin)
            dx = self.result_buffer("dx", (n, h, w, cin), g2.dtype)
            return kernels.conv2d_s1(g4, w_flip, kh - 1 - pt, kw - 1 - pl, h, w, dx)
        if self._cols is None:
            raise RuntimeError(f"{self.name}: backward needs a new forward pass (the last one's patch matrix "
                               "was reused for its gradient inside a model)")
        w2 = kernel.reshape(-1, cout)
        np.matmul(self._cols.T, g2, out=self.grads["kernel"].reshape(w2.shape))  # (K, Cout)
        if not self.needs_input_grad:
            return None
        # dP (N*Ho*Wo, K). Inside a Model the patch matrix is dead once dW is formed (the next
        # forward refills it), so dP takes its place: one 58 MB matrix per 32->32 layer, not two
        if self.reuse_buffers:
            dcols, self._cols = self._cols, None
        else:
            dcols = self.workspace("grad_cols", self._cols.shape, g2.dtype)
        np.matmul(g2, w2.T, out=dcols)
        n = dcols.shape[0] // (ho * wo)
        dx = self.result_buffer("dx", (n, h, w, cin), g2.dtype)
        return kernels.col2im(dcols, n, h, w, cin, *self._window(), dx)

    def get_config(self):
        names = [n if isinstance(n, str) else "glorot_uniform" for n in self._init_names]
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "activation": self.activation.name,
                "use_bias": self.use_bias, "kernel_initializer": names[0], "bias_initializer": names[1]}


Convolution2D = Conv2D  # the Keras 2 name the tutorial imports
