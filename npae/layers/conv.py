"""2-D convolution (cross-correlation, as in Keras), channels-last: im2col + GEMM, or direct.

Shapes: x (N, H, W, Cin), kernel (kh, kw, Cin, Cout), bias (Cout,), z and a (N, Ho, Wo, Cout).
With K = kh*kw*Cin, im2col turns x into the patch matrix P (N*Ho*Wo, K) whose column order
(di, dj, c) matches the kernel's memory order, so the kernel is used as W = kernel.reshape(K, Cout)
without any transpose:

    forward:  Z = P W + bias                     (N*Ho*Wo, Cout)
    backward: dW = P^T G                         (K, Cout)  -> reshaped to (kh, kw, Cin, Cout)
              dbias = sum over rows of G         (Cout,)
              dP = G W^T;  dx = col2im(dP)       (N, H, W, Cin)   (scatter-add of the patches)

P is never built whole: a block of rows (a few images, ``patch_block_bytes``) is built and used at
once, while it is in cache. Z and dP split into the same row blocks, and dW = sum over blocks b of
P_b^T G_b. The backward pass rebuilds each block from the kept input x.

Output size per axis (see ``kernels.window_geometry``): 'valid' floor((n - k) / s) + 1,
'same' ceil(n / s) with TensorFlow's padding (odd pixel at the bottom/right).

"Direct" mode, for stride 1 with few channels (see ``direct_mode``: the tutorial's first and last
convolutions, its 16 -> 8 one and its decoder's 8 -> 8 and 8 -> 16 ones): no patch matrix at all.
``kernels.conv2d_s1`` runs the convolution on zero-padded planes, and the backward pass is two more
such sums:

    dW[a, b, c, o] = sum over (n, i, j) of x[n, i - pt + a, j - pl + b, c] g[n, i, j, o]
    dx = conv2d_s1(g, W_flipped) with padding (kh-1-pt, kw-1-pl),
         W_flipped[a', b', o, c] = kernel[kh-1-a', kw-1-b', c, o]   (the adjoint of a correlation
         is a correlation with the kernel turned 180 degrees and its channel axes swapped)

Winograd mode, for a 3x3 kernel at stride 1 with many channels (see ``winograd_mode``: the
denoiser's 32 -> 32 layers): :mod:`npae.winograd`'s F(2x2, 3x3), 16 instead of 36 multiply-adds
per 2x2 block of outputs and channel pair (9 on an image upsampled 2x), in the forward pass and in
both products of the backward pass.

Inside a Model, an UpSampling2D right before a Conv2D is (as ``reads_upsampled`` decides) not run
on its own: the convolution reads the small image as if upsampled (``upsampled_input``), one output
phase at a time with the taps that read the same small pixel folded together (a 3x3 kernel on a 2x
upsampled image is four 2x2 kernels on the small one; ``kernels.upsampled_phases``), on both paths:
the direct kernel (``kernels.conv2d_s1(up=...)``), or one im2col + GEMM per phase (``_phase_plan``).
Its input gradient comes out for the small image, which takes in UpSampling2D's backward pass. The
same numbers, without the upsampled tensor or its gradient (28x28x32 in the denoiser: 26 MB each per
batch of 256) and with 16 instead of 36 multiply-adds per 2x2 block of outputs.
"""

from __future__ import annotations

import numpy as np

from .. import blas, conv_gemm, initializers, kernels, winograd
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
        """Training: stride 1 with one input channel, fewer outputs than inputs, or at most 128
        channel pairs on an output of at least 8x8 runs ``kernels.conv2d_s1`` (no patch matrix).
        Measured per layer on the tutorial's shapes, forward + backward per 256 images: 8 -> 16 at
        14x14 9.5-9.8 ms direct vs 10.3-13.0 im2col, 8 -> 8 at 8x8 2.2-2.9 vs 2.6-3.0 (and the
        UpSampling2D before each is then read on the fly), but 8 -> 8 at 7x7 3.6 vs 1.7-2.7;
        elsewhere im2col + GEMM wins."""
        cin, (ho, wo) = self.input_shape[2], self._geom[:2]
        small = cin * self.filters <= 128 and ho * wo >= 64
        return self.strides == (1, 1) and (cin == 1 or self.filters < cin or small)

    @property
    def direct_inference_mode(self) -> bool:
        """Inference (``training=False``): the direct kernel also for up to 128 channel pairs. With
        no backward pass to pay for, it beats im2col + GEMM on the tutorial's 8->8 and 8->16 layers
        (e.g. 16x16 8->16 valid: 3.3 vs 5.5 ms per 256 images) but not on 32->32 (12.5 vs 5.0)."""
        return self.direct_mode or (self.strides == (1, 1) and self.input_shape[2] * self.filters <= 128)

    #: Set by a Model, for one forward call, when it runs an UpSampling2D(size) and this layer as
    #: one step (see ``reads_upsampled``): the input is then the small image (N, H/uh, W/uw, Cin),
    #: read upsampled on the fly, and the backward pass returns the gradient with respect to it.
    #: None: an ordinary input.
    upsampled_input: tuple[int, int] | None = None

    #: im2col builds the patch matrix a few images at a time, about this many bytes per block, and
    #: each block's GEMM runs while it is still in cache. Measured on 14x14 32->32 (K = 288, batch
    #: 256): forward + backward 39 -> 27 ms (median of 9), and 4 MB of patches instead of 58 MB.
    patch_block_bytes: int = 4 * 2**20

    #: Set by a Model, for one forward call, when it runs this layer and the MaxPooling2D after it
    #: as one step (see ``pools_in_kernel``): the forward pass returns that layer's output, and the
    #: backward pass takes the gradient with respect to it. None: no pooling.
    pooled_by = None

    def pools_in_kernel(self, pool, training: bool) -> bool:
        """Whether a Model may run ``pool`` (the MaxPooling2D right after this layer) inside this
        layer's kernel (``pooled_by``, :func:`kernels.conv2d_s1_maxpool2x2`, or Winograd's, whose
        2x2 output tiles are the windows): on the direct or Winograd path with an ordinary input
        (the Model checks that), a monotone activation (linear, relu, sigmoid: pooling act(z)
        picks the same winner as pooling z) and no activity penalty (it would read the whole
        output), and 2x2 windows at stride 2 that tile the output exactly. Then the output
        (26 MB for the denoiser's first layer, per 256 images) is never written: each image's
        stays in cache until pooled, and the backward pass unpools image by image. Measured
        forward per 256 images, denoiser 1 -> 32 at 28x28: 3.6 -> 2.3 ms."""
        ho, wo = self._geom[:2]
        return ((self.runs_direct(training) or self.winograd_mode) and self.activation.code in (0, 1, 2)
                and self.activity_regularizer is None and pool.pool_size == (2, 2) and pool.strides == (2, 2)
                and ho % 2 == 0 and wo % 2 == 0)

    def forward(self, x, training=False):
        """a = activation(conv(x) + bias), (N, Ho, Wo, Cout); while a Model has set ``pooled_by``, its
        2x2 max pooling (N, Ho/2, Wo/2, Cout), with the pooling layer's winners filled in."""
        pool = self.pooled_by
        if pool is None:
            return super().forward(x, training)
        x = self._check_input(x)
        ho, wo = self._geom[:2]
        argmax = pool.workspace("argmax", (x.shape[0], ho // 2, wo // 2, self.filters), kernels.argmax_dtype(2, 2))
        act = self.activation.code
        self._out2 = self._forward_direct(x, self._bias(), act, argmax) if self.runs_direct(training) \
            else self._forward_winograd(x, act, argmax)
        self._out, self._pool_argmax = self._out2.reshape(argmax.shape), argmax  # act'(z) at the winners follows
        pool._argmax, pool._out = argmax, self._out  # as if it had run (for its kink_state)
        return self._out

    def runs_direct(self, training: bool) -> bool:
        """Whether a forward pass with this ``training`` flag takes the direct kernel."""
        return self.direct_mode if training else self.direct_inference_mode

    def reads_upsampled(self, size: tuple[int, int], training: bool) -> bool:
        """Whether a Model should let this layer read an UpSampling2D(size)'s input on the fly
        (``upsampled_input``), one output phase at a time: with stride 1, always on the im2col path
        (14x14 32 -> 32 from 7x7: GEMMs of 16 instead of 36 multiply-adds per 2x2 outputs), and on
        the direct path when the small image has at least 8x8 pixels. Below that the direct phase
        convolutions' rows are too short to pay. Forward + backward per 256 images: 8 -> 8 on 4x4
        upsampled to 8x8 3.0 ms phase by phase, 2.4 with the upsampling run on its own; 8 -> 16 on
        8x8 (valid, to 14x14) 7.9 phase by phase against 10.1 reading the upsampled image on the fly
        in one piece, 16 -> 1 on 14x14 5.3 against 8.4."""
        h, w, _ = self.input_shape
        if self.strides != (1, 1):
            return False
        return not self.runs_direct(training) or (h // size[0]) * (w // size[1]) >= 64

    def _check_input(self, x, shape=None):
        if self.upsampled_input is None:
            return super()._check_input(x)
        (uh, uw), (h, w, c) = self.upsampled_input, self.input_shape
        return super()._check_input(x, (h // uh, w // uw, c))  # the image before upsampling

    @property
    def winograd_mode(self) -> bool:
        """Whether forward passes (training or not) take Winograd's F(2x2, 3x3)
        (:mod:`npae.winograd`): a 3x3 kernel at stride 1 where even inference takes im2col (more
        than 128 channel pairs and no direct mode), when NumPy's OpenBLAS is found; on an
        upsampled input too (``upsampled_input``, read on the fly). Measured per 256 images,
        forward + backward, against im2col + GEMM: 14x14 32 -> 32 12.7-12.9 vs 17.2-17.3 ms, 7x7
        32 -> 32 3.9-4.1 vs 4.6, 14x14 16 -> 16 5.3-5.4 vs 6.7; the decoder's 7x7 -> 14x14 32 -> 32
        (9 GEMMs, see ``winograd.slabs_of``) 6.8 vs 9.1 in the model; but on 8 -> 8 (7x7 and
        4x4) 1.25 vs 0.8 and 0.5 vs 0.3: too few channels to pay the transforms."""
        return (self.kernel_size == (3, 3) and self.strides == (1, 1) and not self.direct_inference_mode
                and blas.find() is not None)

    def forward_linear_bias_act(self, x, training, act):
        self._pool_argmax = None  # (every forward pass but a pooled one comes here)
        if self.runs_direct(training):  # the direct kernel adds the bias and applies act as it writes
            return self._forward_direct(x, self._bias(), act)
        if self.winograd_mode:
            return self._forward_winograd(x, act)
        # im2col, GEMM, bias and act per group of images (conv_gemm): without training, and in
        # training where even inference takes im2col (more than 128 channel pairs, not 3x3 at
        # stride 1: on the denoiser's 32 -> 32 layers, before Winograd, forward 6.1 -> 5.2 and
        # 3.5 -> 2.7 ms); on the few channels that train through im2col but infer directly it
        # measured no faster than NumPy's blocks
        z = None if training and self.direct_inference_mode else self._forward_gemm(x, act)
        return super().forward_linear_bias_act(x, training, act) if z is None else z

    def _gemm_plan(self, up):
        """The phase plan (``_phase_plan``) as conv_gemm takes it: windows (P, 8), kernel matrices,
        phase offsets (P, 2)."""
        plan, _ = self._phase_plan(up)
        windows = np.array([window for window, _, _ in plan], dtype=np.int64)
        at = np.array([phase or (0, 0) for _, _, phase in plan], dtype=np.int64)
        return windows, [w2 for _, w2, _ in plan], at

    def _forward_gemm(self, x, act):
        """act(conv(x) + bias) as (N*Ho*Wo, Cout) by ``conv_gemm.forward`` (None where it cannot
        run: then nothing is done). Keeps what backward_linear needs, as forward_linear does."""
        ho, wo, _, _ = self._geom
        up = self.upsampled_input or (1, 1)
        windows, mats, at = self._gemm_plan(up)
        x = np.ascontiguousarray(x)
        z = self.result_buffer("out", (x.shape[0], ho, wo, self.filters), x.dtype)
        if conv_gemm.forward(x, windows, mats, at, up, self._bias(), act, z,
                             lambda size: self.take_scratch((size,), x.dtype)) is None:
            return None
        self._path, self._up, self._x, self._patches = "im2col", up, x, None  # backward rebuilds patches
        return z.reshape(-1, self.filters)

    def _forward_winograd(self, x, act, argmax=None):
        """act(conv(x) + bias) as (N*Ho*Wo, Cout) by ``winograd.forward``; with ``argmax`` (N, Ho/2,
        Wo/2, Cout), its 2x2 max pooling (N*Ho/2*Wo/2, Cout) (see ``pools_in_kernel``)."""
        ho, wo, pt, pl = self._geom
        up = self.upsampled_input or (1, 1)
        x = np.ascontiguousarray(x)
        z = self.result_buffer("out", (x.shape[0], ho, wo, self.filters) if argmax is None else argmax.shape, x.dtype)
        winograd.forward(x, self.params["kernel"], pt, pl, self._bias(), act, z,
                         lambda size: self.take_scratch((size,), x.dtype), up, argmax)
        self._path, self._up, self._x = "winograd", up, x  # for the backward pass
        return z.reshape(-1, self.filters)

    def _forward_direct(self, x, bias, act, argmax=None):
        """act(conv(x) + bias) by ``kernels.conv2d_s1``, or pooled as in :meth:`_forward_winograd`."""
        ho, wo, pt, pl = self._geom
        self._path, self._up = "direct", self.upsampled_input or (1, 1)  # for the backward pass
        self._x = x  # (N, H, W, Cin), or (N, H/uh, W/uw, Cin) when upsampled on the fly
        z = self.result_buffer("out", (x.shape[0], ho, wo, self.filters) if argmax is None else argmax.shape, x.dtype)
        if argmax is None:
            kernels.conv2d_s1(x, self.params["kernel"], pt, pl, ho, wo, z, up=self._up, bias=bias, act=act)
        else:
            kernels.conv2d_s1_maxpool2x2(x, self.params["kernel"], pt, pl, ho, wo, bias, act, z, argmax)
        return z.reshape(-1, self.filters)

    def forward_linear(self, x, training):
        if self.runs_direct(training):
            return self._forward_direct(x, None, 0)
        ho, wo, _, _ = self._geom
        self._path, self._up = "im2col", self.upsampled_input or (1, 1)  # for the backward pass
        n, cout = x.shape[0], self.filters
        plan, _ = self._phase_plan(self._up)
        blocks = self._image_blocks(n, x.dtype, plan)
        cols = self._patch_buffer(blocks, x.dtype, plan)  # flat scratch for one block's patches
        z = self.result_buffer("out", (n * ho * wo, cout), x.dtype)  # (N*Ho*Wo, Cout)
        z4, (uh, uw) = z.reshape(n, ho, wo, cout), self._up
        for s, e in blocks:  # Z_b = P_b W, with P_b built just before, still in cache
            for window, w2, at in plan:
                p = self._patches_of(x, s, e, window, cols)
                if at is None:
                    np.matmul(p, w2, out=z[s * ho * wo:e * ho * wo])
                else:  # an output phase: every uh-th row and uw-th column of the block's outputs
                    z_p = np.matmul(p, w2, out=self.workspace("z_phase", (len(p), cout), x.dtype))
                    z4[s:e, at[0]::uh, at[1]::uw] = z_p.reshape(e - s, window[6], window[7], cout)
        self._x = x
        self._patches = (s, e, p) if len(plan) == 1 else None  # the scratch holds the last block's patches
        return z

    def _phase_plan(self, up: tuple[int, int]) -> tuple[list, list | None]:
        """The im2col path's GEMMs, [(window for kernels.im2col, kernel matrix (K_p, Cout), output
        phase)], and the folded taps (``kernels.upsampled_phases``; None without upsampling): one
        GEMM, the layer's own window and kernel (phase None), or with an upsampled input one
        per output phase (py, px) for an input upsampled by ``up`` (not (1, 1)), with the kernel
        folded for it (see ``kernels.upsampled_phases``): a 3x3 kernel on an image upsampled 2x
        becomes four 2x2 kernels on the small image, so the GEMMs do 16 instead of 36 multiply-adds
        per 2x2 block of outputs."""
        kernel = self.params["kernel"]
        kh, kw, _, cout = kernel.shape
        ho, wo, pt, pl = self._geom
        if up == (1, 1):
            return [(self._window(), kernel.reshape(-1, cout), None)], None
        phases, taps = kernels.upsampled_phases(kh, kw, pt, pl, ho, wo, up)
        folded = kernels.fold_kernel(kernel, phases, taps)
        return [((kph, kpw, 1, 1, pt_p, pl_p, nh, nw), folded[r, :kph, :kpw].reshape(-1, cout), (py, px))
                for r, (py, px, pt_p, pl_p, kph, kpw, nh, nw) in enumerate(phases)], taps

    @staticmethod
    def _patches_of(x, s, e, window, cols):
        """im2col of images [s, e) of x for ``window`` into the flat scratch ``cols``."""
        rows, k = (e - s) * window[6] * window[7], window[0] * window[1] * x.shape[3]
        return kernels.im2col(x[s:e], *window, cols[:rows * k].reshape(rows, k))

    def backward_linear(self, g2):
        # g2 = dL/dz as (N*Ho*Wo, Cout); the base class has already taken dL/dbias from it
        kernel = self.params["kernel"]
        cin, cout = kernel.shape[2:]
        ho, wo, pt, pl = self._geom
        h, w = self.input_shape[0] // self._up[0], self.input_shape[1] // self._up[1]  # x's own size
        n = self._x.shape[0]
        pooled = self._pool_argmax  # with pooled_by: g2 is at the pooled output, (N*Ho/2*Wo/2, Cout)
        g4 = g2.reshape(n, *((ho, wo) if pooled is None else (ho // 2, wo // 2)), cout)
        if self._path == "winograd":
            dx = self.result_buffer("dx", (n, h, w, cin), g2.dtype) if self.needs_input_grad else None
            winograd.backward(self._x, g4, kernel, pt, pl, self.grads["kernel"], dx,
                              lambda size: self.take_scratch((size,), g2.dtype), self._up, pooled)
            return dx
        if self._path == "direct":  # (unpooled per image with pooled_by)
            kernels.conv2d_s1_kernel_grad(self._x, g4, pt, pl, self.grads["kernel"], up=self._up, argmax=pooled)
            if not self.needs_input_grad:
                return None
            dx = self.result_buffer("dx", (n, h, w, cin), g2.dtype)
            return kernels.conv2d_s1_input_grad(g4, kernel, pt, pl, dx, up=self._up, argmax=pooled)
        # per GEMM of the plan: dW = sum over blocks b of P_b^T G_b; dP_b = G_b W^T -> col2im (the
        # phases of an upsampled input add into the same dx). Each block's patches are rebuilt from
        # the kept input (cheap, and in cache), except the last block's when the forward pass left
        # them in the scratch: so the blocks go in reverse order
        plan, taps = self._phase_plan(self._up)
        blocks = self._image_blocks(n, g2.dtype, plan)
        # the last block's patches, if no other layer has used the scratch memory since
        kept = self._patches if self.scratch is not None and self.scratch.owner is self else None
        self._patches = None  # the scratch is overwritten below
        cols = self._patch_buffer(blocks, g2.dtype, plan)
        k_max = max(w2.shape[0] for _, w2, _ in plan)
        dws = self.workspace("dw_plan", (len(plan), k_max, cout), g2.dtype)  # dW of each GEMM
        dw_part = self.workspace("dw_part", (k_max, cout), g2.dtype)
        dx = self.result_buffer("dx", (n, h, w, cin), g2.dtype) if self.needs_input_grad else None
        g4, (uh, uw) = g2.reshape(n, ho, wo, cout), self._up
        for i, (s, e) in enumerate(reversed(blocks)):
            for j, (window, w2, at) in enumerate(plan):
                if kept is not None and kept[:2] == (s, e):
                    p = kept[2]
                else:
                    p = self._patches_of(self._x, s, e, window, cols)
                if at is None:
                    g_b = g2[s * ho * wo:e * ho * wo]
                else:  # this phase's outputs of the block, gathered into rows
                    g_b = self.workspace("g_phase", (len(p), cout), g2.dtype)
                    g_b.reshape(e - s, window[6], window[7], cout)[...] = g4[s:e, at[0]::uh, at[1]::uw]
                dw_j, part = dws[j, :len(w2)], dw_part[:len(w2)]
                np.matmul(p.T, g_b, out=part if i else dw_j)  # (K_p, Cout)
                if i:
                    dw_j += part
                if dx is not None:
                    dp = np.matmul(g_b, w2.T, out=p)  # dP_b (block rows, K_p) replaces P_b in the scratch
                    kernels.col2im(dp, e - s, h, w, cin, *window, dx[s:e], accumulate=j > 0)
        if taps is None:
            self.grads["kernel"].reshape(-1, cout)[...] = dws[0]
        else:  # each phase's folded-kernel gradient back to the taps folded into it
            d_folded = [dws[j, :len(w2)].reshape(wd[0], wd[1], cin, cout) for j, (wd, w2, _) in enumerate(plan)]
            kernels.unfold_kernel_grad(d_folded, taps, self.grads["kernel"])
        return dx

    def _image_blocks(self, n: int, dtype, plan) -> list[tuple[int, int]]:
        """Image ranges [s, e) whose patch matrix (the largest of the plan's, see ``_phase_plan``) is
        about ``patch_block_bytes`` (at least one image)."""
        step = max(1, self.patch_block_bytes // (self._patch_elements(plan) * np.dtype(dtype).itemsize))
        return [(s, min(s + step, n)) for s in range(0, n, step)]

    @staticmethod
    def _patch_elements(plan) -> int:
        """Elements of one image's patch matrix, the largest of the plan's GEMMs: rows x K."""
        return max(window[6] * window[7] * len(w2) for window, w2, _ in plan)

    def _patch_buffer(self, blocks, dtype, plan) -> np.ndarray:
        """Flat scratch memory for one block's patch matrix (and then its gradient)."""
        s, e = blocks[0]
        return self.take_scratch(((e - s) * self._patch_elements(plan),), dtype)

    def get_config(self):
        names = [n if isinstance(n, str) else "glorot_uniform" for n in self._init_names]
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "activation": self.activation.name,
                "use_bias": self.use_bias, "kernel_initializer": names[0], "bias_initializer": names[1]}


Convolution2D = Conv2D  # the Keras 2 name the tutorial imports
