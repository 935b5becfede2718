"""How the fast path runs each operation: pure functions of shapes and settings, nothing else.

Every choice the planner makes is one call here, and each is tested on its own. The thresholds
are measured on the tutorial's layers (forward + backward per 256 images, each against the
alternatives, alternated in one run); the numbers and how they were taken are in
docs/performance.md.

Convolution algorithms (:class:`ConvAlgo`), all computing :mod:`npae.functional.conv`:

- DIRECT: :mod:`npae.fast.conv_direct`, stride 1, few channels: each kernel tap is one
  contiguous multiply-add over zero-padded planes, no patch matrix.
- WINOGRAD: :mod:`npae.fast.winograd`, F(2x2, 3x3): 3x3 at stride 1 with many channels, 16
  instead of 36 multiply-adds per 2x2 outputs and channel pair.
- IM2COL: patch matrix and GEMM in cache-sized blocks of images (:mod:`npae.fast.conv_im2col`).
- GEMM_KERNEL: the forward pass of IM2COL as one Numba kernel calling OpenBLAS per group of
  images (:mod:`npae.fast.conv_gemm`); its backward pass is IM2COL's.
"""

from __future__ import annotations

import enum

__all__ = ["ConvAlgo", "DIRECT_MAX_CHANNEL_PAIRS", "DIRECT_MIN_OUTPUT_PIXELS", "UPSAMPLED_DIRECT_MIN_PIXELS",
           "PATCH_BLOCK_BYTES", "POOLING_ACTIVATIONS", "conv_algorithm", "reads_upsampled", "pools_in_kernel",
           "pools_through_relu", "dense_stack"]


class ConvAlgo(enum.Enum):
    """The algorithm a convolution step runs."""

    DIRECT = "direct"
    WINOGRAD = "winograd"
    IM2COL = "im2col"
    GEMM_KERNEL = "gemm_kernel"


#: The direct kernel pays where Cin * Cout is at most this (its arithmetic is not a GEMM's).
DIRECT_MAX_CHANNEL_PAIRS = 128
#: ... and, in training, where the output has at least this many pixels (8x8): its backward pass
#: needs long planes to pay.
DIRECT_MIN_OUTPUT_PIXELS = 64
#: The direct kernel reads an upsampled input on the fly (phase by phase) only from images of at
#: least this many pixels before upsampling: below that the phase planes' rows are too short.
UPSAMPLED_DIRECT_MIN_PIXELS = 64
#: IM2COL builds the patch matrix a few images at a time, about this many bytes per block, so that
#: each block's GEMMs run while it is in cache.
PATCH_BLOCK_BYTES = 4 * 2**20
#: Activations a max pooling can be taken through inside the convolution: monotone, so pooling
#: act(z) picks z's winner, and their derivative at the winner follows from the pooled value.
POOLING_ACTIVATIONS = ("linear", "relu", "sigmoid")


def conv_algorithm(kernel_size: tuple[int, int], strides: tuple[int, int], cin: int, cout: int,
                   out_hw: tuple[int, int], training: bool, have_openblas: bool) -> ConvAlgo:
    """The algorithm for a convolution of this shape.

    Stride 1 runs DIRECT with one input channel, or at most DIRECT_MAX_CHANNEL_PAIRS channel pairs
    where either there are fewer outputs than inputs or (in training) the output has at least
    DIRECT_MIN_OUTPUT_PIXELS pixels (without a backward pass to pay for, on any output). Otherwise a 3x3
    kernel at stride 1 runs WINOGRAD, and the rest the patch matrix: GEMM_KERNEL's forward pass
    unless training on a layer that inference would run DIRECT (there NumPy's blocks measured
    faster), IM2COL's. WINOGRAD and GEMM_KERNEL call OpenBLAS from Numba: without it, IM2COL.
    """
    pairs = cin * cout
    stride_1 = strides == (1, 1)
    few = pairs <= DIRECT_MAX_CHANNEL_PAIRS
    big_output = out_hw[0] * out_hw[1] >= DIRECT_MIN_OUTPUT_PIXELS
    direct_train = stride_1 and (cin == 1 or (few and (cout < cin or big_output)))
    direct_infer = direct_train or (stride_1 and few)
    if direct_train if training else direct_infer:
        return ConvAlgo.DIRECT
    if not have_openblas:
        return ConvAlgo.IM2COL
    if kernel_size == (3, 3) and stride_1 and not direct_infer:
        return ConvAlgo.WINOGRAD
    return ConvAlgo.IM2COL if training and direct_infer else ConvAlgo.GEMM_KERNEL


def reads_upsampled(algo: ConvAlgo, strides: tuple[int, int], small_hw: tuple[int, int]) -> bool:
    """Whether a convolution reads the UpSampling2D before it on the fly (the upsampled image is
    never formed): at stride 1, always on the patch-matrix and Winograd paths, and on the direct
    path from images of at least UPSAMPLED_DIRECT_MIN_PIXELS pixels (before upsampling)."""
    if strides != (1, 1):
        return False
    return algo is not ConvAlgo.DIRECT or small_hw[0] * small_hw[1] >= UPSAMPLED_DIRECT_MIN_PIXELS


def pools_in_kernel(algo: ConvAlgo, activation: str, has_activity_penalty: bool, reads_upsampled_input: bool,
                    out_hw: tuple[int, int], pool_size: tuple[int, int], pool_strides: tuple[int, int]) -> bool:
    """Whether the MaxPooling2D right after a convolution runs inside the convolution's kernel
    (the convolution's output is then never written): on the DIRECT or WINOGRAD path with an
    ordinary input, an activation of POOLING_ACTIVATIONS, no activity penalty (it would read the
    whole output), and 2x2 windows at stride 2 that tile an even output exactly (on an even size
    'same' adds no padding, so the pooling's padding does not matter)."""
    return (algo in (ConvAlgo.DIRECT, ConvAlgo.WINOGRAD) and not reads_upsampled_input
            and activation in POOLING_ACTIVATIONS and not has_activity_penalty
            and pool_size == (2, 2) and pool_strides == (2, 2) and out_hw[0] % 2 == 0 and out_hw[1] % 2 == 0)


def pools_through_relu(activation_below: str | None, below_has_activity_penalty: bool) -> bool:
    """Whether a max pooling's backward pass hands the step below dL/dz instead of dL/da: when that
    step ends in a relu (whose derivative at the winners is 1[pooled > 0]) and has no activity
    penalty. The step below then skips its own pass over the gradient."""
    return activation_below == "relu" and not below_has_activity_penalty


def dense_stack(all_dense: bool, activations_fused: bool, have_openblas: bool) -> bool:
    """Whether a prediction runs a model of Dense layers as one kernel (:mod:`npae.fast.dense_stack`):
    all its layers Dense, each activation one the kernel applies, OpenBLAS found."""
    return all_dense and activations_fused and have_openblas
