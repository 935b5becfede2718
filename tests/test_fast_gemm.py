"""The GEMM kernels of the fast path and the OpenBLAS they call (npae.fast: blas, dense_stack,
conv_gemm, conv_im2col) compute their reference operations (npae.functional: dense, conv,
activations, upsample), every chunk size and dtype, and give OpenBLAS's thread count back."""

import sys

import numba
import numpy as np
import pytest

from npae import functional as ref
from npae.fast import blas, conv_gemm, conv_im2col, dense_stack
from npae.fast.elementwise import ACT_CODES
from npae.fast.memory import Workspace


def numpy_uses_openblas() -> bool:
    info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return "openblas" in info["name"].lower() and sys.platform.startswith("linux")


needs_openblas = pytest.mark.skipif(not numpy_uses_openblas(), reason="NumPy is not built on OpenBLAS here")

ACT_NAMES = {code: name for name, code in ACT_CODES.items()}  # 0 linear, 1 relu, 2 sigmoid


def scratch_of(dtype):
    return lambda size: np.full(size, np.nan, dtype)  # nothing read before it is written


def test_openblas_found_exactly_where_numpy_uses_it():
    found = blas.find()
    assert (found is not None) == numpy_uses_openblas(), (found, np.show_config(mode="dicts"))
    if found is not None:
        assert "openblas" in found.path.lower() and found.int_dtype in (np.int32, np.int64)
        assert found.gemm(np.dtype(np.float32)) is found.sgemm and found.gemm(np.dtype(np.float64)) is found.dgemm


# ---------------------------------------------------------------------------- matmul

# (m, k, n): split by rows, by columns (each has at least SPLIT_FLOPS multiply-adds), and not split
MATMUL_SHAPES = [(512, 256, 96), (96, 256, 512), (256, 784, 32), (32, 256, 784), (300, 40, 30), (5, 3, 7), (1, 1, 1),
                 (65, 2, 65)]


@pytest.mark.parametrize("m, k, n", MATMUL_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_matmul_is_numpys_product_for_every_split(m, k, n, dtype, trans_a, trans_b, accumulate):
    rng = np.random.default_rng(m * n + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    a, b = (a.T if trans_a else a), (b.T if trans_b else b)
    start = rng.standard_normal((m, n)).astype(dtype)
    out = start.copy()
    got = blas.matmul(a, b, out, accumulate=accumulate)
    want = (start if accumulate else 0) + a.astype(np.float64) @ b.astype(np.float64)
    assert got is out
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * np.sqrt(k))


def test_matmul_splits_the_longer_side_of_products_big_enough_to_share():
    assert blas.split(8, 8, 8, threads=2) == (1, True)  # 512 multiply-adds: one call
    assert blas.split(1024, 32, 784, threads=2) == (2, True)  # by rows of C
    assert blas.split(32, 1024, 784, threads=2) == (2, False)  # by columns
    assert blas.split(40, 40, 8192, threads=2) == (1, True)  # 40 rows: fewer than 2 x ROWS_PER_THREAD
    assert blas.split(4096, 64, 64, threads=8) == (8, True)
    for m, k, n in MATMUL_SHAPES[:4]:  # the shapes above do test the split kernel
        assert blas.split(m, n, k, threads=2)[0] == 2


def test_matmul_of_arrays_it_cannot_hand_to_openblas_is_numpys():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]  # neither C- nor F-contiguous
    b = np.ones((3, 2), np.float32)
    out = np.zeros((4, 2), np.float32)
    np.testing.assert_array_equal(blas.matmul(a, b, out), a @ b)
    ints = np.ones((4, 3), np.int64)
    np.testing.assert_array_equal(blas.matmul(ints, ints.T, np.zeros((4, 4), np.int64)), ints @ ints.T)
    for dtype in (np.float16, np.longdouble):  # floats OpenBLAS has no GEMM for
        half = np.arange(64, dtype=dtype).reshape(8, 8) / 8
        np.testing.assert_array_equal(blas.matmul(half, half, np.zeros((8, 8), dtype)), half @ half)


@needs_openblas
def test_matmul_gives_openblas_its_thread_count_back():
    openblas = blas.find()
    before = openblas.threads()
    a = np.ones((512, 512), np.float32)
    try:
        for threads in (2, 1, 3):
            openblas.set_threads(threads)
            blas.matmul(a, a, np.empty_like(a))
            assert openblas.threads() == threads
            with openblas.single_threaded():
                assert openblas.threads() == 1
                with openblas.single_threaded():  # nested: still one, and the outer block restores
                    blas.matmul(a, a, np.empty_like(a))
                assert openblas.threads() == 1
            assert openblas.threads() == threads
    finally:
        openblas.set_threads(before)


# ---------------------------------------------------------------------------- dense_stack

# the tutorial's Dense stacks (784 -> ... -> 784, relu then a sigmoid output) and a small one with a
# linear layer without bias in the middle
STACKS = {"vanilla": ([784, 64, 784], ["relu", "sigmoid"]),
          "deep": ([784, 128, 64, 32, 64, 128, 784], ["relu"] * 5 + ["sigmoid"]),
          "multilayer": ([784, 128, 64, 128, 784], ["relu"] * 3 + ["sigmoid"]),
          "small": ([5, 7, 3, 6], ["relu", "linear", "sigmoid"])}


def stack(name, dtype, seed=0):
    """(kernels, biases, activation names): Glorot-uniform kernels and non-zero biases (so that a
    missing bias term would show), but none for the small stack's linear layer."""
    dims, acts = STACKS[name]
    rng = np.random.default_rng(seed)
    kernels, biases = [], []
    for k, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        limit = np.sqrt(6 / (d_in + d_out))
        kernels.append(rng.uniform(-limit, limit, (d_in, d_out)).astype(dtype))
        no_bias = name == "small" and k == 1
        biases.append((np.zeros(d_out) if no_bias else np.linspace(-1, 1, d_out)).astype(dtype))
    return kernels, biases, acts


def layer_after_layer(x, kernels, biases, acts):
    """The reference: dense then activation, one layer after the other."""
    h = x
    for kernel, bias, act in zip(kernels, biases, acts):
        z, _ = ref.dense.forward(h, kernel, bias)
        h, _ = ref.activations.forward(z, act)
    return h


def run_stack(x, kernels, biases, acts):
    out = np.full((len(x), kernels[-1].shape[1]), np.nan, x.dtype)
    assert dense_stack.forward(x, kernels, biases, [ACT_CODES[a] for a in acts], out, scratch_of(x.dtype)) is out
    return out


def stack_tol(dtype):
    return dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(STACKS))
@pytest.mark.parametrize("n", [1, 7, 300])
@pytest.mark.parametrize("block_rows", [dense_stack.BLOCK_ROWS, 5])  # 5: many blocks, the last one short
def test_dense_stack_is_the_layer_by_layer_forward(monkeypatch, name, n, dtype, block_rows):
    monkeypatch.setattr(dense_stack, "BLOCK_ROWS", block_rows)
    kernels, biases, acts = stack(name, dtype)
    x = np.random.default_rng(n).uniform(-1, 2, (n, kernels[0].shape[0])).astype(dtype)
    out = run_stack(x, kernels, biases, acts)
    np.testing.assert_allclose(out, layer_after_layer(x, kernels, biases, acts), **stack_tol(dtype))
    assert out.dtype == dtype and out.shape == (n, kernels[-1].shape[1])


@needs_openblas
def test_dense_stack_on_one_thread_and_in_odd_chunks():
    kernels, biases, acts = stack("vanilla", np.float32)
    x = np.random.default_rng(0).random((4100, 784), dtype=np.float32)  # 4100 = 32 * 128 + 4 rows
    want = layer_after_layer(x, kernels, biases, acts)
    np.testing.assert_allclose(run_stack(x, kernels, biases, acts), want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(run_stack(x[:37], kernels, biases, acts), want[:37], rtol=2e-5, atol=1e-6)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        np.testing.assert_allclose(run_stack(x[:300], kernels, biases, acts), want[:300], rtol=2e-5, atol=1e-6)
    finally:
        numba.set_num_threads(before)
    out = np.empty((0, 784), np.float32)
    assert dense_stack.forward(x[:0], kernels, biases, [1, 2], out, scratch_of(np.float32)) is out


@needs_openblas
def test_dense_stack_reads_weights_of_any_layout_and_rejects_bad_arrays():
    kernels, biases, acts = stack("small", np.float32)
    x = np.random.default_rng(2).random((9, 5), dtype=np.float32)
    want = layer_after_layer(x, kernels, biases, acts)
    fortran = [np.asfortranarray(kernels[0]), *kernels[1:]]
    np.testing.assert_allclose(run_stack(x, fortran, biases, acts), want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(run_stack(x, [k.astype(np.float64) for k in kernels], biases, acts), want,
                               rtol=2e-5, atol=1e-6)  # (weights of another dtype are cast)
    out, codes, scratch = np.empty((9, 6), np.float32), [1, 0, 2], scratch_of(np.float32)
    for bad_x, bad_out, bad_kernels, bad_biases in [
            (np.asfortranarray(x), out, kernels, biases), (x, out[:, :5], kernels, biases),
            (x, out.astype(np.float64), kernels, biases), (x[:, :4].copy(), out, kernels, biases),
            (x, out[:8], kernels, biases), (x, np.asfortranarray(out), kernels, biases),
            (x, out, [kernels[0][:, :6], *kernels[1:]], biases), (x, out, kernels, [biases[0][:6], *biases[1:]]),
            (x, out, kernels[:2], biases[:2])]:
        with pytest.raises(ValueError, match="dense_stack.forward: expected C-contiguous x"):
            dense_stack.forward(bad_x, bad_kernels, bad_biases, codes[:len(bad_kernels)], bad_out, scratch)
    with pytest.raises(ValueError, match="dense_stack.forward"):
        dense_stack.forward(x, kernels, biases, codes[:2], out, scratch)  # an activation missing


@needs_openblas
def test_kernels_give_openblas_its_thread_count_back():
    # the kernels run OpenBLAS single-threaded; the caller's own GEMMs must not stay that way
    openblas = blas.find()
    kernels, biases, acts = stack("deep", np.float32)
    x = np.ones((512, 784), np.float32)
    images = np.ones((8, 6, 5, 12), np.float32)
    before = openblas.threads()
    try:
        for threads in (2, 1, 3):
            openblas.set_threads(threads)
            run_stack(x, kernels, biases, acts)
            assert openblas.threads() == threads
            gemm_forward(images, np.ones((3, 3, 12, 12), np.float32), "same", (1, 1), None, np.zeros(12, np.float32), 1)
            assert openblas.threads() == threads
    finally:
        openblas.set_threads(before)


# ---------------------------------------------------------------------------- convolutions

CONV_CASES = [  # (up, kernel size, padding, strides); (3, 3) at stride 1 is the planner's Winograd's, tested too
    (None, (3, 3), "same", (1, 1)), ((2, 2), (3, 3), "same", (1, 1)), ((1, 3), (3, 3), "same", (1, 1)),
    (None, (3, 2), "same", (1, 1)), (None, (2, 3), "valid", (2, 1)), ((2, 2), (3, 2), "same", (1, 1)),
    ((1, 3), (2, 3), "same", (1, 1)), ((3, 2), (3, 1), "valid", (1, 1)), (None, (3, 3), "same", (2, 2)),
    (None, (1, 1), "valid", (1, 1))]


def geometry(x_shape, kernel_size, padding, strides, up):
    """The conv_im2col.Geometry of a convolution of x (N, H, W, C) read upsampled by ``up``."""
    (kh, kw), (sh, sw) = kernel_size, strides
    ho, pt, _ = ref.conv.output_size(x_shape[1] * up[0], kh, sh, padding)
    wo, pl, _ = ref.conv.output_size(x_shape[2] * up[1], kw, sw, padding)
    return conv_im2col.Geometry(ho, wo, pt, pl, kh, kw, sh, sw)


def reference_conv(x, kernel, bias, padding, strides, up):
    """(z, caches): the reference convolution of x upsampled by ``up``, plus the bias."""
    big, up_cache = ref.upsample.forward(x, up)
    z, cache = ref.conv.forward(big, kernel, bias, strides, padding)
    return z, (cache, up_cache)


def reference_conv_backward(g, caches):
    """(dx, dkernel): the convolution's backward pass, then the upsampling's."""
    cache, up_cache = caches
    d_big, dkernel, _ = ref.conv.backward(g, cache)
    return ref.upsample.backward(d_big, up_cache), dkernel


def gemm_forward(x, kernel, padding, strides, up, bias, act):
    """conv_gemm.forward with the GEMMs of conv_im2col.phase_plan, as the fast path calls it."""
    up = up or (1, 1)
    geom = geometry(x.shape, kernel.shape[:2], padding, strides, up)
    plan, _ = conv_im2col.phase_plan(kernel, geom, up)
    windows = np.array([g.window for g in plan], dtype=np.int64)
    at = np.array([g.at or (0, 0) for g in plan], dtype=np.int64)
    out = np.full((x.shape[0], geom.ho, geom.wo, kernel.shape[3]), np.nan, x.dtype)
    assert conv_gemm.forward(x, windows, [g.w2 for g in plan], at, up, bias, act, out, scratch_of(x.dtype)) is out
    return out


def assert_close(got, want):
    """Equal up to rounding, relative to the largest value too: with an upsampled input the kernels
    sum the taps that read one pixel before multiplying (phases.fold_kernel), the reference after."""
    tol = 1e-5 if want.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max())))


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("up,kernel_size,padding,strides", CONV_CASES)
@pytest.mark.parametrize("patch_bytes", [conv_gemm.PATCH_BYTES, 1])  # 1: one image per group
def test_conv_gemm_forward_is_the_reference_convolution(monkeypatch, up, kernel_size, padding, strides, dtype,
                                                        patch_bytes):
    # act(conv(x read upsampled) + bias), a group of images per thread, phase by phase on an
    # upsampled input
    monkeypatch.setattr(conv_gemm, "PATCH_BYTES", patch_bytes)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4, 3, 12)).astype(dtype)
    kernel = rng.standard_normal((*kernel_size, 12, 7)).astype(dtype)
    bias = np.linspace(-1, 1, 7).astype(dtype)
    z, _ = reference_conv(x, kernel, bias, padding, strides, up or (1, 1))
    for act in (0, 1, 2):
        out = gemm_forward(x, kernel, padding, strides, up, bias, act)
        assert_close(out, ref.activations.forward(z, ACT_NAMES[act])[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("up,kernel_size,padding,strides", CONV_CASES)
@pytest.mark.parametrize("images_per_block", [1, 2, 5])
def test_conv_im2col_forward_and_backward_are_the_reference_convolutions(up, kernel_size, padding, strides, dtype,
                                                                          images_per_block):
    rng = np.random.default_rng(5)
    up = up or (1, 1)
    x = rng.standard_normal((5, 4, 3, 6)).astype(dtype)
    kernel = rng.standard_normal((*kernel_size, 6, 4)).astype(dtype)
    geom = geometry(x.shape, kernel_size, padding, strides, up)
    # the patch matrix of images_per_block images: its largest GEMM's rows x K per image
    plan, _ = conv_im2col.phase_plan(kernel, geom, up)
    block_bytes = images_per_block * max(gemm.window[6] * gemm.window[7] * len(gemm.w2) for gemm in plan) * x.itemsize
    blocks = conv_im2col.image_blocks(5, plan, x.itemsize, block_bytes)
    assert blocks == [(s, min(s + images_per_block, 5)) for s in range(0, 5, images_per_block)]
    want, caches = reference_conv(x, kernel, None, padding, strides, up)
    g = rng.standard_normal(want.shape).astype(dtype)
    want_dx, want_dw = reference_conv_backward(g, caches)
    ws, owner = Workspace(), object()
    z = np.full((5 * geom.ho * geom.wo, 4), np.nan, dtype)
    kept = conv_im2col.forward(x, kernel, geom, up, z, ws, owner, block_bytes)
    assert_close(z.reshape(want.shape), want)
    dw, dx = np.full_like(kernel, np.nan), np.full_like(x, np.nan)
    conv_im2col.backward(x, g.reshape(-1, 4), kernel, geom, up, dw, dx, ws, owner, kept, block_bytes)
    assert_close(dw, want_dw)
    assert_close(dx, want_dx)
    # without the input gradient, and with the scratch memory taken (and overwritten) by another
    # step since the forward pass: the patches it kept must not be read
    kept = conv_im2col.forward(x, kernel, geom, up, z, ws, owner, block_bytes)
    ws.take_scratch(object(), 1, dtype)
    ws.scratch.array[...] = np.nan
    dw[...] = np.nan
    conv_im2col.backward(x, g.reshape(-1, 4), kernel, geom, up, dw, None, ws, owner, kept, block_bytes)
    assert_close(dw, want_dw)


def wrong_out_calls():
    """Calls of the GEMM kernels' wrappers with one array of a wrong shape (or dtype), by name."""
    rng = np.random.default_rng(6)
    f32 = np.float32
    x = rng.standard_normal((2, 6, 6, 3)).astype(f32)
    kernel = rng.standard_normal((3, 3, 3, 4)).astype(f32)
    bias, g2 = np.zeros(4, f32), rng.standard_normal((72, 4)).astype(f32)
    geom = conv_im2col.Geometry(6, 6, 1, 1, 3, 3, 1, 1)
    windows, at = np.array([[3, 3, 1, 1, 1, 1, 6, 6]]), np.zeros((1, 2), np.int64)
    kernels = [kernel.reshape(27, 4)]

    def gemm(out):
        return conv_gemm.forward(x, windows, kernels, at, (1, 1), bias, 0, out, scratch_of(f32))

    def dense(out):
        return dense_stack.forward(x.reshape(12, 18), [np.ones((18, 4), f32)], [bias], [0], out, scratch_of(f32))

    def im2col_backward(dw, dx):
        return conv_im2col.backward(x, g2, kernel, geom, (1, 1), dw, dx, Workspace(), "step", None, 1 << 20)

    return {
        "conv_gemm channels": lambda: gemm(np.empty((2, 6, 6, 3), f32)),
        "conv_gemm batch": lambda: gemm(np.empty((1, 6, 6, 4), f32)),
        "conv_gemm too small": lambda: gemm(np.empty((2, 6, 5, 4), f32)),
        "conv_gemm too large": lambda: gemm(np.empty((2, 60, 60, 4), f32)),
        "conv_gemm dtype": lambda: gemm(np.empty((2, 6, 6, 4))),
        "dense_stack rows": lambda: dense(np.empty((11, 4), f32)),
        "dense_stack units": lambda: dense(np.empty((12, 5), f32)),
        "conv_im2col.forward rows": lambda: conv_im2col.forward(x, kernel, geom, (1, 1), np.empty((71, 4), f32),
                                                                Workspace(), "step", 1 << 20),
        "conv_im2col.forward shape": lambda: conv_im2col.forward(x, kernel, geom, (1, 1), np.empty((36, 8), f32),
                                                                 Workspace(), "step", 1 << 20),
        "conv_im2col.backward dw": lambda: im2col_backward(np.empty((3, 3, 4, 3), f32), None),
        "conv_im2col.backward dx": lambda: im2col_backward(np.empty_like(kernel), np.empty((2, 6, 5, 3), f32)),
    }


@needs_openblas
@pytest.mark.parametrize("what", sorted(wrong_out_calls()))
def test_wrong_out_arrays_are_rejected(what):
    # the kernels trust their arrays' shapes: every wrapper checks them first (a wrong shape is a
    # ValueError, never a write outside an array or an output left partly unwritten)
    call = wrong_out_calls()[what]
    with pytest.raises(ValueError):
        call()
