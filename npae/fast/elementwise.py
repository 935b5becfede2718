"""Fused element-wise kernels: one pass over memory where NumPy would make three to six.

Each kernel computes what the reference operations of :mod:`npae.functional` compute (the tests
hold them against each other). Activations are coded as ints (:data:`ACT_CODES`): 0 linear,
1 relu, 2 sigmoid; the others run on the reference operations.

    exp_nonpos(x)                      exp(x) for x <= 0, a float32 exp LLVM can vectorise
    activate(v, act, one)              act(v) for one value (inside other kernels)
    bias_act_forward(z, b, act)        z <- act(z + b)                (in place; z is (rows, units))
    act_backward(g, a, act, out)       out <- g * act'(a)             (derivative from the output a)
    sigmoid_bce_with_grad(z, t, grad)  sum of BCE(sigmoid(z), t); grad <- (sigmoid(z) - t) / numel
    mse_with_grad(y, t, grad)          sum of (y - t)^2;              grad <- 2 (y - t) / numel
    adam_update / adadelta_update      one optimizer step, in place (the signatures of
                                       npae.functional.optimizers, whose sgd and rmsprop are used)
    gather_rows(src, idx, out)         out[r] <- src[idx[r]]          (a batch from the training set)

Loss sums are accumulated in float64 per row, then added in a fixed order: results are
bit-identical run to run.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange, types
from numba.extending import intrinsic, overload

from ..functional.optimizers import rmsprop_update, sgd_update
from .runtime import inline, rows_kernel

__all__ = ["ACT_CODES", "exp_nonpos", "activate", "bias_act_forward", "act_backward", "sigmoid_bce_with_grad",
           "mse_with_grad", "sgd_update", "rmsprop_update", "adam_update", "adadelta_update", "gather_rows"]

ACT_CODES = {"linear": 0, "relu": 1, "sigmoid": 2}
# fastmath "reassoc" lets LLVM vectorise the float64 loss sums (MSE over (256, 784): 0.187 ->
# 0.048 ms); only reassociation and contraction, no assumptions about NaN or inf (TerminateOnNaN
# needs them). The kernels over (rows, cols) batches run their rows in parallel (a launch costs
# ~4 us with the TBB layer, see npae/fast/runtime.py); each row's sum is formed in a fixed order by
# one thread and the row sums are added in order, so results are bit-identical run to run. The
# optimizer steps are element-wise (no sums) and use prange too: besides two threads it is what
# gets them vectorised (the same loop with plain range stayed scalar, 7x slower over 50k weights).
_rows = rows_kernel


# -- exp(x) for x <= 0, the only exponential the stable sigmoid and BCE need ---------------------
# Numba's float32 exp is a call into libm per element, which blocks vectorisation (8x slower than
# NumPy's SIMD exp here). This one is plain arithmetic that LLVM turns into AVX2 code:
#   x = n ln2 + r,  n = round(x / ln2),  |r| <= ln2 / 2     (ln2 split in two: n * LN2_HI is exact)
#   exp(x) = 2^n exp(r),  exp(r) by its Taylor series to r^7 (next term <= 0.35^8 / 8! = 5e-9)
#   2^n    = the float32 whose exponent bits are n + 127 (normal for n >= -126)
# Measured over [-87.3, 0]: within 0.93 ulp of the exact value with FMA, 1.21 without (NumPy's
# float32 exp: 2.4 ulp).
# Below ln(2^-126) = -87.34 it returns 0 (the true value is under 1.2e-38); NaN stays NaN.
# float64 arguments get libm's exp: the gradient checks run in float64 and want it exact.
_LN2_HI = np.float32(0.693145751953125)  # ln 2 to 12 significant bits
_LN2_LO = np.float32(1.428606765330187e-06)  # ln 2 - _LN2_HI
_LOG2E = np.float32(1.4426950408889634)
_EXP_MIN = np.float32(-87.33654)  # ln 2^-126


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 with the bit pattern of the integer ``bits`` (truncated to 32 bits)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if bits.bitwidth > 32:
            v = builder.trunc(v, context.get_value_type(types.int32))
        return builder.bitcast(v, context.get_value_type(types.float32))

    return types.float32(bits), codegen


def exp_nonpos(x):
    """exp(x) for a scalar x <= 0, callable from Numba kernels (float32: the vectorisable
    polynomial above, within 1.5 ulp; float64: libm's exp). In Python it is NumPy's exp."""
    return np.exp(x)


@overload(exp_nonpos, inline="always", fastmath={"contract"})
def _exp_nonpos_numba(x):
    if not (isinstance(x, types.Float) and x.bitwidth == 32):
        return lambda x: np.exp(x)

    def exp32(x):
        xc = x if x > _EXP_MIN else _EXP_MIN  # NaN and -inf too: keeps n in range
        n = np.floor(xc * _LOG2E + np.float32(0.5))
        r = (xc - n * _LN2_HI) - n * _LN2_LO
        p = np.float32(1 / 5040)  # Horner: 1 + r + r^2/2! + ... + r^7/7!
        p = p * r + np.float32(1 / 720)
        p = p * r + np.float32(1 / 120)
        p = p * r + np.float32(1 / 24)
        p = p * r + np.float32(1 / 6)
        p = p * r + np.float32(0.5)
        p = p * r + np.float32(1)
        p = p * r + np.float32(1)
        y = p * _float32_from_bits((np.int32(n) + 127) << 23)
        return y if x > _EXP_MIN else (np.float32(0) if x <= _EXP_MIN else x)

    return exp32


@inline
def activate(v, act, one):
    """act(v) for one value inside a Numba kernel (act: 0 linear, 1 relu, 2 sigmoid). Sigmoid with
    e = exp(-|v|) in (0, 1]: 1 / (1 + e) for v >= 0, e / (1 + e) otherwise (never the exp of a
    positive number). ``one`` has v's dtype: a literal 0 or 1 would promote float32 maths to
    float64 (and its exp to libm's, several times slower)."""
    zero = one - one
    if act == 1:
        return zero if v < zero else v
    if act == 2:
        e = exp_nonpos(-abs(v))
        r = one / (one + e)
        return r if v >= zero else e * r
    return v


@_rows
def _bias_act(z, b, act):
    rows, cols = z.shape
    one = z.dtype.type(1)  # here, not passed in: z.dtype.type(1) costs 0.7 us in Python
    for i in prange(rows):
        for j in range(cols):
            z[i, j] = activate(z[i, j] + b[j], act, one)


def bias_act_forward(z, b, act):
    """z <- act(z + b) in place, z (rows, units), b (units,); one pass over z."""
    rows, cols = z.shape
    if b.shape != (cols,):
        raise ValueError(f"bias_act_forward: expected a bias of shape {(cols,)}, got {b.shape}")
    k = _rows_per_line(rows, cols) if z.flags.c_contiguous else 1
    _bias_act(z.reshape(rows // k, k * cols), np.tile(b, k) if k > 1 else b, act)
    return z


def _rows_per_line(rows: int, cols: int) -> int:
    """How many rows of a contiguous (rows, cols) array to treat as one when cols is tiny (a
    1-channel image's (N*H*W, 1)): the kernels vectorise along a row, and 200k rows of one element
    ran several times slower. The largest k dividing rows with k * cols <= 512."""
    return math.gcd(rows, 512 // cols) if 0 < cols < 8 else 1




@_rows
def _act_backward(g, a, act, out):
    rows, cols = g.shape
    zero, one = g.dtype.type(0), g.dtype.type(1)
    for i in prange(rows):
        for j in range(cols):
            if act == 1:
                out[i, j] = g[i, j] if a[i, j] > zero else zero
            elif act == 2:
                out[i, j] = g[i, j] * a[i, j] * (one - a[i, j])
            else:
                out[i, j] = g[i, j]
    return out


def act_backward(g, a, act, out):
    """out <- g * act'(a), all (rows, units); act' from the output a."""
    _check_rows("act_backward", g, a, out)
    rows, cols = g.shape
    contiguous = g.flags.c_contiguous and a.flags.c_contiguous and out.flags.c_contiguous
    k = _rows_per_line(rows, cols) if contiguous else 1
    shape = (rows // k, k * cols)
    _act_backward(g.reshape(shape), a.reshape(shape), act, out.reshape(shape))
    return out




@_rows
def _sigmoid_bce(z, t, grad, one, inv_n):
    # With e = exp(-|z|): loss = sum(max(z, 0) - z t) + sum log(1 + e), and
    # dL/dz = (sigmoid(z) - t) / numel into grad. The logs are taken of products of 32 factors
    # (each in (1, 2], so the product stays below 2^32): 32x fewer logarithms. Each block of 32 is
    # summed in z's dtype (float32 vectors are twice as wide as float64 ones: 0.33 -> 0.20 ms per
    # 256x784 batch) and the block sums in float64.
    rows, cols = z.shape
    zero = one - one
    row_sums = np.empty(rows, dtype=np.float64)
    for i in prange(rows):
        s = 0.0
        for j0 in range(0, cols, 32):  # blocks of 32: a branch-free inner loop that vectorises
            prod, lin = one, zero
            for j in range(j0, min(j0 + 32, cols)):
                v, y = z[i, j], t[i, j]
                e = exp_nonpos(-abs(v))
                lin += max(v, zero) - v * y
                prod *= one + e
                r = one / (one + e)
                grad[i, j] = ((r if v >= zero else e * r) - y) * inv_n
            s += np.log(np.float64(prod)) + lin
        row_sums[i] = s
    total = 0.0
    for i in range(rows):  # in order: the same sum on every run
        total += row_sums[i]
    return total


def sigmoid_bce_with_grad(z, t, grad):
    """Sum over all elements of BCE(sigmoid(z), t), computed from the logits; fills grad (shape of z)
    with (sigmoid(z) - t) / numel. z, t, grad are (rows, cols)."""
    _check_rows("sigmoid_bce_with_grad", z, t, grad)
    return _sigmoid_bce(z, t, grad, z.dtype.type(1), z.dtype.type(1 / z.size))




def mse_with_grad(y, t, grad):
    """Sum of (y - t)^2 over all elements; fills grad with 2 (y - t) / numel. All (rows, cols)."""
    _check_rows("mse_with_grad", y, t, grad)
    return _mse_with_grad(y, t, grad, y.dtype.type(2 / y.size))


@_rows
def _mse_with_grad(y, t, grad, scale):
    rows, cols = y.shape
    row_sums = np.empty(rows, dtype=np.float64)
    for i in prange(rows):
        s = 0.0
        for j in range(cols):
            d = y[i, j] - t[i, j]
            s += d * d
            grad[i, j] = d * scale
        row_sums[i] = s
    total = 0.0
    for i in range(rows):  # in order: the same sum on every run
        total += row_sums[i]
    return total


def _check_rows(what, first, *others) -> None:
    """The (rows, cols) kernels index every array by the first one's shape: each must have it."""
    for a in others:
        if first.ndim != 2 or a.shape != first.shape:
            raise ValueError(f"{what}: expected arrays of one shape (rows, cols), got {first.shape} and {a.shape}")


def _flat(a: np.ndarray) -> np.ndarray:
    """A 1-D view (never a copy: the update must land in the array itself)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"optimizer: parameters and slots must be C-contiguous, got strides {a.strides}")
    return a.reshape(-1)


def _same_shapes(p, *others) -> None:
    """The kernels index every array by p's size: each must be exactly p's shape and dtype."""
    for a in others:
        if a.shape != p.shape or a.dtype != p.dtype:
            raise ValueError(f"optimizer: expected arrays of shape {p.shape} and dtype {p.dtype}, got {a.shape} "
                             f"{a.dtype}")


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, eps):
    """:func:`npae.functional.optimizers.adam_update`, in one pass."""
    _same_shapes(p, g, m, v)
    f = p.dtype.type
    _adam_update(_flat(p), _flat(g), _flat(m), _flat(v), f(lr_t), f(1 - beta_1), f(1 - beta_2), f(eps))


@_rows
def _adam_update(p, g, m, v, lr_t, one_minus_b1, one_minus_b2, eps):
    # m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr_t m / (sqrt(v) + eps)
    for i in prange(p.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_minus_b1
        vi = v[i] + (gi * gi - v[i]) * one_minus_b2
        m[i], v[i] = mi, vi
        p[i] -= lr_t * mi / (np.sqrt(vi) + eps)


def adadelta_update(p, g, accum_grad, accum_delta, lr, rho, eps):
    """:func:`npae.functional.optimizers.adadelta_update`, in one pass."""
    _same_shapes(p, g, accum_grad, accum_delta)
    f = p.dtype.type
    _adadelta_update(_flat(p), _flat(g), _flat(accum_grad), _flat(accum_delta), f(lr), f(rho), f(1 - rho), f(eps))


@_rows
def _adadelta_update(p, g, acc_grad, acc_delta, lr, rho, one_minus_rho, eps):
    # E[g2] = rho E[g2] + (1 - rho) g^2;  d = sqrt(E[dx2] + eps) / sqrt(E[g2] + eps) g
    # E[dx2] = rho E[dx2] + (1 - rho) d^2;  p -= lr d
    for i in prange(p.size):
        gi = g[i]
        ag = rho * acc_grad[i] + one_minus_rho * gi * gi
        d = np.sqrt(acc_delta[i] + eps) / np.sqrt(ag + eps) * gi
        acc_grad[i] = ag
        acc_delta[i] = rho * acc_delta[i] + one_minus_rho * d * d
        p[i] -= lr * d


def gather_rows(src, idx, out):
    """out[r] <- src[idx[r]] for a C-contiguous (n, features) ``src`` and ``out`` of its dtype:
    ``np.take(src, idx, axis=0, out=out)`` on all cores. Every idx is checked to lie in [0, n)."""
    if src.ndim != 2 or out.shape != (idx.size, src.shape[1]) or out.dtype != src.dtype:
        raise ValueError(f"gather_rows: expected a 2-D src and out of shape {(idx.size, *src.shape[1:])} and dtype "
                         f"{src.dtype}, got src {src.shape} and out {out.shape} {out.dtype}")
    if not _gather_rows(src, idx, out):
        raise IndexError(f"gather_rows: indices must lie in [0, {len(src)})")
    return out


@_rows
def _gather_rows(src, idx, out):
    n = src.shape[0]
    for r in range(idx.size):  # (a serial check first: a few ns per index)
        if idx[r] < 0 or idx[r] >= n:
            return False
    for r in prange(idx.size):
        out[r, :] = src[idx[r], :]
    return True
