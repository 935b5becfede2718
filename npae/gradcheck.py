"""Gradient checking by central differences in float64.

For a scalar f of a tensor T, the numeric derivative at element i is

    (f(T + eps e_i) - f(T - eps e_i)) / (2 eps)

and it must match the analytic gradient G[i] within PyTorch's ``allclose`` rule

    |G[i] - numeric| <= atol + rtol * |numeric|      (defaults eps 1e-6, atol 1e-5, rtol 1e-3).

A layer is checked through f = sum(U * layer(x)) + its activity penalty, with a random upstream
gradient U, for the input and every parameter; a loss through f = loss(y_pred, y_true); a model
through its training loss. Coordinates whose +-eps step crosses a kink (a ReLU's zero, a max-pool's
argmax changing, a clip bound) are skipped and counted, since no derivative exists there.
Layers that draw noise (a ``numpy.random.Generator`` attribute ``rng``: Dropout, GaussianNoise) have
their generator's state restored before every forward pass, so that every pass sees the same draw.
"Projection" mode checks a few random directions d per tensor instead of every element:
(f(T + eps d) - f(T - eps d)) / (2 eps) against sum(G * d).

The report's relative error is |G - numeric| / max(|G|, |numeric|, atol), so values that are both
below atol do not dominate it.
"""

from __future__ import annotations

import copy
import sys
import types
from dataclasses import dataclass, field

import numpy as np

from .layers.base import Layer
from .losses import Loss
from .losses import get as get_loss

__all__ = ["EPS", "ATOL", "RTOL", "TensorCheck", "GradcheckReport", "GradcheckError",
           "check_layer", "check_loss", "check_model", "gradcheck"]

EPS, ATOL, RTOL = 1e-6, 1e-5, 1e-3  # PyTorch's torch.autograd.gradcheck defaults


class GradcheckError(AssertionError):
    """A gradient disagrees with its finite-difference estimate; the message names tensor and index."""


@dataclass
class TensorCheck:
    """The verdict for one tensor: worst errors, where they occurred, and skipped coordinates."""

    name: str
    shape: tuple[int, ...]
    checked: int = 0
    skipped: int = 0
    max_abs_error: float = 0.0
    worst_rel_error: float = 0.0
    worst_index: tuple | str = ()
    analytic: float = 0.0
    numeric: float = 0.0
    failures: int = 0

    @property
    def passed(self) -> bool:
        return self.failures == 0 and self.checked > 0


@dataclass
class GradcheckReport:
    """All tensor checks plus the invariants (affine backward, repeatable backward, input untouched)."""

    checks: list[TensorCheck] = field(default_factory=list)
    invariants: dict[str, bool] = field(default_factory=dict)
    eps: float = EPS
    atol: float = ATOL
    rtol: float = RTOL

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks) and all(self.invariants.values())

    @property
    def worst_rel_error(self) -> float:
        return max((c.worst_rel_error for c in self.checks), default=0.0)

    def table(self) -> str:
        """A readable table: tensor, shape, checked/skipped, worst errors and where, pass/fail."""
        rows = [("tensor", "shape", "checked", "skipped", "max abs err", "worst rel err", "at", "result")]
        for c in self.checks:
            rows.append((c.name, str(c.shape), str(c.checked), str(c.skipped), f"{c.max_abs_error:.2e}",
                         f"{c.worst_rel_error:.2e}", str(c.worst_index), "pass" if c.passed else "FAIL"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        for name, ok in self.invariants.items():
            lines.append(f"invariant {name}: {'pass' if ok else 'FAIL'}")
        return "\n".join(lines)

    def raise_if_failed(self) -> GradcheckReport:
        for c in self.checks:
            if not c.passed:
                why = "no coordinate could be checked" if c.checked == 0 else (
                    f"analytic {c.analytic:.8g} vs numeric {c.numeric:.8g}, "
                    f"outside atol {self.atol:g} + rtol {self.rtol:g} * |numeric|")
                raise GradcheckError(f"gradient of {c.name} wrong at index {c.worst_index}: {why}\n{self.table()}")
        bad = [k for k, ok in self.invariants.items() if not ok]
        if bad:
            raise GradcheckError(f"invariant(s) violated: {', '.join(bad)}\n{self.table()}")
        return self

    def __str__(self) -> str:
        return self.table()


def _rng_states(layers) -> list:
    """(generator, saved state) of every layer with a random generator ``rng`` (Dropout,
    GaussianNoise): restored before each forward pass, so that every pass draws the same noise."""
    found = []
    for layer in layers:
        rng = getattr(layer, "rng", None)
        if isinstance(rng, np.random.Generator) and all(rng is not g for g, _ in found):
            found.append((rng, copy.deepcopy(rng.bit_generator.state)))
    return found


def _restore(states) -> None:
    for rng, state in states:
        rng.bit_generator.state = state


def _snapshot(kinks) -> list:
    """Copies of the kink masks: layers may keep them in buffers that the next forward reuses."""
    return [np.array(k, copy=True) for k in kinks()]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _central(t, probe, eps, mode, f, kinks, base_kinks):
    """f at T + eps*probe and T - eps*probe (probe: an index, or a direction), T restored after;
    ``crossed`` says whether either step changed a kink mask."""
    if mode == "full":
        saved = t[probe]
        t[probe] = saved + eps
        fp, kp = f(), _snapshot(kinks)
        t[probe] = saved - eps
        fm, km = f(), _snapshot(kinks)
        t[probe] = saved
    else:
        saved = t.copy()
        t += eps * probe
        fp, kp = f(), _snapshot(kinks)
        t[...] = saved - eps * probe
        fm, km = f(), _snapshot(kinks)
        t[...] = saved
    return fp, fm, not (_same(kp, base_kinks) and _same(km, base_kinks))


def _check_tensor(name, t, grad, f, kinks, eps, atol, rtol, mode, n_proj, rng) -> TensorCheck:
    """Compare ``grad`` with central differences of ``f()`` as ``t`` (modified in place) moves."""
    res = TensorCheck(name, tuple(t.shape))
    base_kinks, worst_ratio = _snapshot(kinks), -1.0
    if mode == "full":
        probes = [np.unravel_index(i, t.shape) for i in range(t.size)]
    else:
        probes = [rng.standard_normal(t.shape) for _ in range(n_proj)]
    for k, probe in enumerate(probes):
        numeric = None
        for step_eps in (eps, eps / 10, eps / 100):  # a smaller step may stay clear of a nearby kink
            fp, fm, crossed = _central(t, probe, step_eps, mode, f, kinks, base_kinks)
            if not crossed:
                numeric = (fp - fm) / (2 * step_eps)
                break
        analytic = float(grad[probe]) if mode == "full" else float(np.sum(grad * probe))
        if numeric is None:
            res.skipped += 1
            continue
        res.checked += 1
        err = abs(analytic - numeric)
        res.failures += err > atol + rtol * abs(numeric)
        res.worst_rel_error = max(res.worst_rel_error, err / max(abs(analytic), abs(numeric), atol))
        res.max_abs_error = max(res.max_abs_error, err)
        ratio = err / (atol + rtol * abs(numeric))  # > 1 means outside tolerance
        if ratio >= worst_ratio:
            worst_ratio = ratio
            res.worst_index = tuple(int(i) for i in probe) if mode == "full" else f"projection {k}"
            res.analytic, res.numeric = analytic, numeric
    f()  # leave caches consistent with the unperturbed tensor
    return res


def check_layer(layer, x: np.ndarray | None = None, input_shape=None, batch_size: int = 3, seed: int = 0,
                eps: float = EPS, atol: float = ATOL, rtol: float = RTOL, mode: str = "full",
                n_projections: int = 8, raise_on_failure: bool = True) -> GradcheckReport:
    """Check a layer's input and parameter gradients, plus its backward invariants.

    Parameters
    ----------
    layer : any npae layer; a float64 copy is checked, the original is untouched.
    x : input batch (N, *input_shape); default standard-normal of shape (batch_size, *input_shape).
        For a layer with ``many_inputs`` (a merge), a list of input batches, one per input.
    input_shape : the shape without batch axis, if ``x`` is not given and the layer is unbuilt
        (for a layer with ``many_inputs``, a list of shapes).
    mode : 'full' (every element) or 'projection' (``n_projections`` random directions per tensor).
    raise_on_failure : raise :class:`GradcheckError` naming the tensor and index.

    Returns
    -------
    GradcheckReport with one row per tensor ('input', or 'input 0', 'input 1', ... for a layer
    with ``many_inputs``, then each parameter). The invariants cover every input.
    """
    rng = np.random.default_rng(seed)
    layer = copy.deepcopy(layer)
    many = bool(getattr(layer, "many_inputs", False))
    if x is None:
        shape = input_shape or layer.input_shape
        if shape is None:
            raise ValueError("check_layer: give x or input_shape for an unbuilt layer")
        xs = [rng.standard_normal((batch_size, *s)) for s in (shape if many else [shape])]
    elif many and not isinstance(x, (list, tuple)):
        raise ValueError(f"check_layer: {type(layer).__name__} takes a list of inputs; give x as a list of arrays")
    else:
        xs = [np.array(a, dtype=np.float64) for a in (x if many else [x])]
    if not layer.built:
        layer.build([a.shape[1:] for a in xs] if many else xs[0].shape[1:], rng=rng)
    layer.astype(np.float64)
    arg = xs if many else xs[0]  # what forward gets: the arrays below are perturbed in place
    reg = layer.activity_regularizer
    several = bool(getattr(layer, "many_outputs", False))  # (an LSTM with return_state: a list out)
    rngs = _rng_states([layer])  # every forward pass below draws the same noise
    _restore(rngs)
    out, _ = layer.forward(arg, training=True)
    u = [rng.standard_normal(o.shape) for o in out] if several else rng.standard_normal(out.shape)

    def outputs(out) -> list:
        return list(out) if several else [out]

    def f() -> float:
        _restore(rngs)
        out, cache = layer.forward(arg, training=True)
        value = sum(float(np.sum(w * o)) for w, o in zip(outputs(u), outputs(out)))
        if reg is not None:
            value += sum(reg.penalty(o) for o in outputs(out))
        return value + (layer.layer_loss(cache) if layer.has_loss else 0.0)  # (a VAE's KL term)

    def backward(g):
        _restore(rngs)
        out, cache = layer.forward(arg, training=True)
        if reg is not None:
            g = [a + reg.gradient(o) for a, o in zip(g, out)] if several else g + reg.gradient(out)
        dx, grads = layer.backward(g, cache)
        missing = [k for k in layer.params if k not in grads]
        if missing:
            raise GradcheckError(f"{layer.name}.backward returned no gradient for {missing}")
        dxs = list(dx) if many else [dx]
        if many and [np.shape(d) for d in dxs] != [a.shape for a in xs]:
            raise GradcheckError(f"{layer.name}.backward returned input gradients of shapes "
                                 f"{[np.shape(d) for d in dxs]} for inputs of shapes {[a.shape for a in xs]}")
        return [*(np.array(d, copy=True) for d in dxs), *(np.array(grads[k], copy=True) for k in layer.params)]

    def kinks():
        _restore(rngs)
        out, cache = layer.forward(arg, training=True)
        masks = layer.kinks(cache)
        for o in outputs(out) if reg is not None else ():
            if (m := reg.kink(o)) is not None:
                masks = [*masks, m]
        return masks

    xs_before = [a.copy() for a in xs]
    grads = backward(u)
    report = GradcheckReport(eps=eps, atol=atol, rtol=rtol)
    report.invariants[f"forward leaves its input{'s' if many else ''} unchanged"] = all(
        np.array_equal(a, b) for a, b in zip(xs, xs_before))
    again = backward(u)
    report.invariants["backward twice gives the same result"] = all(np.array_equal(a, b) for a, b in zip(grads, again))
    if several:
        u2 = [rng.standard_normal(w.shape) for w in u]
        g2, gm = backward(u2), backward([0.3 * a + 0.7 * b for a, b in zip(u, u2)])
    else:
        u2 = rng.standard_normal(u.shape)
        g2, gm = backward(u2), backward(0.3 * u + 0.7 * u2)
    report.invariants["backward is affine in the upstream gradient"] = all(
        np.allclose(m, 0.3 * a + 0.7 * b, rtol=1e-9, atol=1e-12) for m, a, b in zip(gm, grads, g2))
    names = [f"input {i}" for i in range(len(xs))] if many else ["input"]
    tensors = [*zip(names, xs), *((f"{layer.name}.{k}", v) for k, v in layer.params.items())]
    for (name, t), g in zip(tensors, grads):
        report.checks.append(_check_tensor(name, t, g, f, kinks, eps, atol, rtol, mode, n_projections, rng))
    return report.raise_if_failed() if raise_on_failure else report


def check_loss(loss, y_pred: np.ndarray, y_true: np.ndarray, eps: float = EPS, atol: float = ATOL,
               rtol: float = RTOL, raise_on_failure: bool = True) -> GradcheckReport:
    """Check dL/dy_pred of a loss (``npae.losses`` name or instance) at float64 ``y_pred``."""
    loss = get_loss(loss)
    y_pred, y_true = np.array(y_pred, dtype=np.float64), np.asarray(y_true, dtype=np.float64)
    _, cache = loss.forward(y_pred, y_true)
    grad = np.array(loss.backward(cache), copy=True)

    def f() -> float:
        return loss.forward(y_pred, y_true)[0]

    def kinks():
        k = loss.kink(loss.forward(y_pred, y_true)[1])
        return [] if k is None else [k]

    report = GradcheckReport(eps=eps, atol=atol, rtol=rtol)
    report.checks.append(_check_tensor("y_pred", y_pred, grad, f, kinks, eps, atol, rtol, "full", 0, None))
    return report.raise_if_failed() if raise_on_failure else report


def _float64(data):
    """Arrays (or a list or dict of them, for a model with several inputs or outputs) in float64."""
    if isinstance(data, dict):
        return {k: _float64(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)) and data and all(isinstance(v, np.ndarray) or v is None for v in data):
        return [None if v is None else np.asarray(v, dtype=np.float64) for v in data]
    return np.asarray(data, dtype=np.float64)


def check_model(model, x, y, eps: float = EPS, atol: float = ATOL, rtol: float = RTOL,
                mode: str = "full", n_projections: int = 6, seed: int = 0, randomize_biases: bool = True,
                raise_on_failure: bool = True, jit_compile: bool | None = None) -> GradcheckReport:
    """Check every trainable parameter's gradient of a compiled model's training objective (the
    weighted losses of its outputs + penalties), on the model's path, or on the one
    ``jit_compile`` names (False: the reference path, True: the fast path). ``x`` and ``y`` are
    what ``fit`` takes (lists or dicts for several inputs or outputs).

    The model is copied and cast to float64. Keras initialises biases to zero, which puts every
    ReLU unit whose inputs are all zero exactly on its kink (z = 0, no derivative); with
    ``randomize_biases`` the copy draws biases from N(0, 0.1^2) first so that no unit sits there.
    In 'projection' mode a failing tensor is re-checked element by element ('full'), so a failure
    always names an index.
    """
    rng = np.random.default_rng(seed)
    model = copy.deepcopy(model)
    model.astype(np.float64)
    if jit_compile is not None:
        model.jit_compile = jit_compile
    if randomize_biases:
        for key, p in model.parameters().items():
            if key.endswith("/bias"):
                p[...] = rng.normal(0.0, 0.1, p.shape)
    x, y = _float64(x), _float64(y)
    rngs = _rng_states(model.leaf_layers())  # every forward pass below draws the same noise
    _restore(rngs)
    model.compute_gradients(x, y)
    grads = {k: g.copy() for k, g in model.gradients().items()}
    params = model.parameters()

    def f() -> float:
        _restore(rngs)
        return model.compute_loss(x, y)

    def kinks():
        _restore(rngs)
        return model.kinks(x, y)

    report = GradcheckReport(eps=eps, atol=atol, rtol=rtol)
    for key in grads:
        p = params[key]
        res = _check_tensor(key, p, grads[key], f, kinks, eps, atol, rtol, mode, n_projections, rng)
        if mode != "full" and not res.passed:
            res = _check_tensor(key, p, grads[key], f, kinks, eps, atol, rtol, "full", 0, rng)
        report.checks.append(res)
    return report.raise_if_failed() if raise_on_failure else report


def gradcheck(obj, *args, **kwargs) -> GradcheckReport:
    """Dispatch to :func:`check_model`, :func:`check_layer` or :func:`check_loss` by type."""
    if hasattr(obj, "compute_gradients"):
        return check_model(obj, *args, **kwargs)
    if isinstance(obj, Layer):
        return check_layer(obj, *args, **kwargs)
    if isinstance(obj, (Loss, str)):
        return check_loss(obj, *args, **kwargs)
    raise TypeError(f"gradcheck: expected a model, layer or loss, got {type(obj).__name__}")


class _CallableModule(types.ModuleType):
    """Lets ``npae.gradcheck`` be both this module and the :func:`gradcheck` function."""

    def __call__(self, obj, *args, **kwargs) -> GradcheckReport:
        return gradcheck(obj, *args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
