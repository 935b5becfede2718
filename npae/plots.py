"""Figures: loss curves, reconstructions, the 2-D view of the codes, learned filters, activation
histograms. Headless (Agg backend); every figure says what it shows (a title, labelled axes, a
legend or a colour bar where one applies), and every file is written atomically."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .saving import atomic_write  # noqa: E402

__all__ = ["save_figure", "plot_history", "plot_reconstructions", "plot_codes", "plot_filters", "plot_histograms",
           "pca_2d", "manifold_grid", "plot_manifold"]


def save_figure(fig, path) -> str:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return os.fspath(path)


def plot_history(history: dict[str, list[float]], path, title: str = "") -> str:
    """Training and validation loss per epoch (whole epochs on the x axis)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        if history.get(key):
            marker = "o" if len(history[key]) <= 30 else None  # markers clutter long runs
            ax.plot(range(1, len(history[key]) + 1), history[key], marker=marker, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (mean over the samples)")
    ax.set_title(title or "loss per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_reconstructions(rows: list[np.ndarray], labels: list[str], path, n: int = 10, title: str = "") -> str:
    """The tutorial's figure: one row per array (e.g. originals, then reconstructions), up to n
    images each (fewer if the arrays hold fewer), each row labelled."""
    n = max(1, min([n, *(len(r) for r in rows)]))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n + 1.2, 1.7 * len(rows) + 0.6), squeeze=False)
    for r, (images, label) in enumerate(zip(rows, labels)):
        for i in range(n):
            ax = axes[r][i]
            ax.imshow(np.asarray(images[i]).reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=12)
    fig.suptitle(title or f"{' / '.join(labels)}: {n} test images", fontsize=13)
    fig.tight_layout()
    return save_figure(fig, path)


def pca_2d(codes: np.ndarray) -> np.ndarray:
    """Project (n, d) codes onto their two principal components (d = 2 is returned as is)."""
    codes = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    if codes.shape[1] <= 2:
        return codes
    centred = codes - codes.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def plot_codes(codes: np.ndarray, labels: np.ndarray, path, title: str = "", class_names=None) -> str:
    """Scatter of the codes in 2-D (their first two principal components where wider), coloured by
    class, with a legend naming the classes."""
    flat = np.asarray(codes).reshape(len(codes), -1)
    wide = flat.shape[1] > 2
    xy = pca_2d(flat)
    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(7, 5.5))
    cmap = plt.get_cmap("tab10")
    for k in np.unique(labels):
        name = class_names[int(k)] if class_names is not None and 0 <= int(k) < len(class_names) else str(k)
        pick = labels == k
        ax.scatter(xy[pick, 0], xy[pick, 1], s=4, alpha=0.7, color=cmap(int(k) % 10), label=name)
    ax.legend(title="class", markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    which = f"PCA of the {flat.shape[1]}-d codes" if wide else "the 2-d codes"
    ax.set_xlabel("principal component 1" if wide else "code 1")
    ax.set_ylabel("principal component 2" if wide else "code 2")
    ax.set_title(f"{title} ({which})" if title else which)
    return save_figure(fig, path)


def plot_filters(kernel: np.ndarray, path, max_filters: int = 32, title: str = "") -> str:
    """First-layer weights as images on one colour scale (with its bar): a dense kernel (784,
    units) shows each unit's 28x28 weights; a conv kernel (kh, kw, cin, cout) each filter's first
    input channel."""
    k = np.asarray(kernel)
    tiles = k.T.reshape(-1, 28, 28) if k.ndim == 2 else np.moveaxis(k[:, :, 0, :], -1, 0)
    tiles = tiles[:max_filters]
    cols = min(8, len(tiles))
    rows = int(np.ceil(len(tiles) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols + 1.0, 1.5 * rows + 0.6), squeeze=False)
    limit = float(np.abs(tiles).max()) or 1.0
    image = None
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, tile) in enumerate(zip(axes.flat, tiles)):
        image = ax.imshow(tile, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(str(i), fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.8, label="weight")
    fig.suptitle(title or "first-layer weights, one image per unit / filter")
    return save_figure(fig, path)


def plot_histograms(values: dict[str, np.ndarray], path, xlabel: str = "mean code activation", title: str = "") -> str:
    """Overlaid histograms, e.g. the mean code activation with and without an L1 penalty."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, v in values.items():
        ax.hist(np.ravel(v), bins=40, alpha=0.6, label=f"{label} (mean {np.mean(v):.3f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title or f"histogram of the {xlabel}")
    ax.legend()
    return save_figure(fig, path)


def manifold_grid(n: int = 15, low: float = 0.05, high: float = 0.95) -> np.ndarray:
    """(n * n, 2) points of the 2-D latent plane, row by row from the top: the Gaussian's quantiles
    at n evenly spaced probabilities in [low, high] on each axis (its inverse CDF: where the prior
    N(0, 1) puts equal mass between neighbouring points, as the Keras blog's figure does)."""
    from statistics import NormalDist

    q = [NormalDist().inv_cdf(p) for p in np.linspace(low, high, n)]
    return np.array([[x, y] for y in q[::-1] for x in q], dtype=np.float64)


def plot_manifold(decoder, path, n: int = 15, title: str = "", image_shape=(28, 28)) -> str:
    """The variational autoencoder's latent manifold: the decoder's images for the points of
    :func:`manifold_grid` (a 2-D latent), tiled n x n, with z_1 across and z_2 up."""
    grid = manifold_grid(n)
    images = np.asarray(decoder.predict(grid.astype(np.float32), batch_size=256, verbose=0))
    h, w = image_shape
    canvas = np.zeros((n * h, n * w))
    for k, img in enumerate(images.reshape(len(grid), h, w)):
        r, c = divmod(k, n)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = img
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
    ticks = np.arange(n) * w + w / 2
    ax.set_xticks(ticks[::2], [f"{v:.1f}" for v in grid[:n, 0][::2]])
    ax.set_yticks(ticks[::2], [f"{v:.1f}" for v in grid[::n, 1][::2]])
    ax.set_xlabel("z_1 (the Gaussian's quantiles)")
    ax.set_ylabel("z_2")
    ax.set_title(title or "images the decoder makes across the 2-D latent plane")
    return save_figure(fig, path)

