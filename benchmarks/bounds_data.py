"""Data sets of the bound benchmark (``benchmarks/bounds.py``): street-scene CNN
features, image-like feature maps, a mixture of manifolds, scikit-learn's digits,
and the training of the DMC and masked-convolution estimators that give some of
them their densities.

Each builder returns a :class:`densecore.bench.bounds.Dataset` (features
L2-normalised, as the paper does before selection). ``benchmarks/bounds.py``
passes :func:`load_datasets` to :func:`densecore.bench.bounds.run_bounds`; the
package never imports this module (``densecore bench bounds`` runs the Gaussian
mixture built into :mod:`densecore.bench.bounds` alone and says so).

    python benchmarks/bounds.py --quick     # gmm, scene, scene_dmc, digits
"""

from __future__ import annotations

import logging
import time

import numpy as np

from densecore.bench.bounds import Dataset, gmm_dataset, knn_dataset, l2_rows
from densecore.synthetic import feature_map, manifold_mixture, scene_features
from densecore.validation import check_int

log = logging.getLogger(__name__)

__all__ = ["FEATMAP_DENSITIES", "digits_dataset", "featmap_dataset", "load_datasets",
           "manifold_dataset", "scene_dataset", "spatial_neighbour_error",
           "train_density_estimator"]

#: density sources of the image-like data set
FEATMAP_DENSITIES = ("spatial", "dmc", "masked_conv")


def digits_dataset() -> Dataset | None:
    """scikit-learn's digits (1797 x 64), L2-normalised, kNN raw error; None without
    scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        log.warning("scikit-learn is not installed; skipping the digits data set "
                    "(pip install 'densecore-seg[test]')")
        return None
    d = load_digits()
    return knn_dataset("digits", l2_rows(d.data / 16.0), d.target)


def spatial_neighbour_error(features: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance of each pixel to its (up to 8) spatial neighbours in a
    ``(B, D, H, W)`` map: the naive Monte-Carlo estimate of the average radial
    distance that the paper's DMC estimator refines (Eq. 5). Returns ``(B, H, W)``.

    Example:
        >>> f = np.zeros((1, 1, 2, 2)); f[0, 0, 0, 0] = 3.0
        >>> spatial_neighbour_error(f)[0].tolist()
        [[3.0, 1.0], [1.0, 1.0]]
    """
    f = np.asarray(features, dtype=np.float64)
    b, _, h, w = f.shape
    total = np.zeros((b, h, w))
    count = np.zeros((b, h, w))
    for u in (-1, 0, 1):
        for v in (-1, 0, 1):
            if u == 0 and v == 0:
                continue
            oi, si = slice(max(0, -u), h - max(0, u)), slice(max(0, u), h - max(0, -u))
            oj, sj = slice(max(0, -v), w - max(0, v)), slice(max(0, v), w - max(0, -v))
            d = np.sqrt(((f[:, :, oi, oj] - f[:, :, si, sj]) ** 2).sum(1))
            total[:, oi, oj] += d
            count[:, oi, oj] += 1
    return total / count


def train_density_estimator(maps: np.ndarray, region: np.ndarray, kind: str = "dmc", *,
                            steps: int = 300, dim: int = 16, kernel_size: int = 5,
                            labeled_fraction: float = 0.1, lr: float = 1e-2,
                            seed: int = 0, est_kwargs: dict | None = None
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train a DMC or masked-convolution estimator on feature maps and read it out.

    The loss is Eq. 8 plus the auxiliary cross-entropy on the region ids of a
    seeded ``labeled_fraction`` of the pixels (the rest ignored); full-batch
    Adam, one torch thread (restored afterwards), weights seeded by ``seed`` inside
    :func:`torch.random.fork_rng` (the global RNG is untouched); ``est_kwargs`` go to
    the estimator's constructor.

    Args:
        maps: ``(B, C, H, W)`` float backbone features.
        region: ``(B, H, W)`` int class ids in ``[0, 255)``.
        kind: ``"dmc"`` (:class:`densecore.DMCEstimator`) or ``"masked_conv"``
            (:class:`densecore.MaskedConvEstimator`).
        steps: Adam steps.
        dim, kernel_size: the estimator's ``dim`` and ``K``.
        labeled_fraction: share of pixels whose region id the auxiliary loss sees.
        lr: Adam learning rate.
        seed: seed of the initialisation and of the labeled pixels.

    Returns:
        ``(features (B*H*W, dim) float32 F L2-normalised per pixel, error
        (B*H*W,) float64 reconstruction error, densities (B*H*W,) float64
        estimator.density)``, pixels in ``(b, h, w)`` order.

    Example:
        >>> from densecore.synthetic import feature_map
        >>> f, r, _ = feature_map(1, 4, 8, 8, n_regions=3, seed=0)
        >>> x, e, d = train_density_estimator(f, r, "masked_conv", steps=2, dim=4, kernel_size=3)
        >>> x.shape, e.shape, bool((d > 0).all())
        ((64, 4), (64,), True)
    """
    import torch

    from densecore.density import DMCEstimator, MaskedConvEstimator

    classes = {"dmc": DMCEstimator, "masked_conv": MaskedConvEstimator}
    if kind not in classes:
        raise ValueError(f"kind must be one of {sorted(classes)}; got {kind!r}")
    steps = check_int(steps, "steps", minimum=0)
    x = torch.as_tensor(np.ascontiguousarray(maps, dtype=np.float32))
    target = torch.as_tensor(np.asarray(region, dtype=np.int64)).clone()
    rng = np.random.default_rng(seed)
    target[torch.as_tensor(rng.random(tuple(target.shape)) >= labeled_fraction)] = 255
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is fastest and leaves the rest
    # the seed applies inside fork_rng only: the global torch RNG is left as it was
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            est = classes[kind](x.shape[1], dim=dim, kernel_size=kernel_size,
                                num_classes=int(region.max()) + 1, **(est_kwargs or {}))
        opt = torch.optim.Adam(est.parameters(), lr=lr)
        for _ in range(steps):
            loss = est.loss(est(x), target)  # Eq. 8 + auxiliary cross-entropy
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out = est(x)
            dens = est.density(out)
    finally:
        torch.set_num_threads(threads)
    f = out.features.permute(0, 2, 3, 1).reshape(-1, est.dim).numpy()
    return (l2_rows(f), out.error.reshape(-1).numpy().astype(np.float64),
            dens.reshape(-1).numpy().astype(np.float64))


def featmap_dataset(batch: int = 2, height: int = 30, width: int = 32, dim: int = 16,
                    seed: int = 0, *, density: str = "spatial", steps: int = 300,
                    est_dim: int = 16, kernel_size: int = 5) -> Dataset:
    """The ``featmap`` data sets: :func:`densecore.synthetic.feature_map` pixels as
    samples (8 regions with noise from 0.05 to 1.0, labels = region ids), the map
    L2-normalised per pixel.

    ``density="spatial"`` (name ``featmap``): the normalised pixels are the
    features, raw error = :func:`spatial_neighbour_error`. ``"dmc"`` or
    ``"masked_conv"`` (name ``featmap_<density>``): an estimator is trained on
    the map by :func:`train_density_estimator` (``steps``, ``est_dim``,
    ``kernel_size``, ``seed``); features, raw error and densities are its output.

    Example:
        >>> ds = featmap_dataset(1, 8, 8, 4)
        >>> ds.features.shape, int(ds.labels.max()) < 8
        ((64, 4), True)
    """
    if density not in FEATMAP_DENSITIES:
        raise ValueError(f"density must be one of {list(FEATMAP_DENSITIES)}; got {density!r}")
    f, region, _ = feature_map(batch, dim, height, width, n_regions=8, seed=seed)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    labels = region.reshape(-1).astype(np.int64)
    t0 = time.perf_counter()
    if density == "spatial":
        e = spatial_neighbour_error(f).reshape(-1)
        x = np.ascontiguousarray(f.transpose(0, 2, 3, 1).reshape(-1, dim), dtype=np.float32)
        return Dataset("featmap", x, labels, e, time.perf_counter() - t0, density="spatial")
    x, e, d = train_density_estimator(f, region, density, steps=steps, dim=est_dim,
                                      kernel_size=kernel_size, seed=seed)
    return Dataset(f"featmap_{density}", x, labels, e, time.perf_counter() - t0,
                   density=density, densities=d)


def manifold_dataset(n: int = 3000, seed: int = 0) -> Dataset:
    """The ``manifolds`` data set: :func:`densecore.synthetic.manifold_mixture`
    (1-D curve, 2-D sheet, 16-D blob in D = 16), L2-normalised, kNN raw error.

    Example:
        >>> manifold_dataset(300).features.shape
        (300, 16)
    """
    x, y = manifold_mixture(n, dim=16, seed=seed)
    return knn_dataset("manifolds", l2_rows(x), y)


def _margin(probs: np.ndarray) -> np.ndarray:
    top = np.sort(probs, axis=1)[:, -2:]
    return 1.0 - top[:, 1] + top[:, 0]  # 1 - P1 + P2 (the paper's margin score)


def scene_dataset(density: str = "knn", *, steps: int = 150, est_steps: int = 100,
                  seed: int = 0) -> Dataset:
    """The ``scene`` data sets: pixels of 4 target-domain street scenes (24 x 32 at
    stride 2, N = 3,072), features of a CNN trained on the source domain
    (:func:`densecore.synthetic.scene_features`), true classes as labels and the
    margin score ``1 - P1 + P2`` of the CNN as ``scores`` (the paper protocol's
    candidates).

    ``density="knn"`` (name ``scene``): L2-normalised CNN features, kNN raw
    error. ``"dmc"`` (name ``scene_dmc``): a :class:`densecore.DMCEstimator`
    (``dim = 16``, ``K = 5``) trained on the target feature maps for
    ``est_steps`` steps as in :func:`train_density_estimator` (aux loss on 10 %
    of the true labels); its F, reconstruction error and density.

    Example:
        >>> ds = scene_dataset(steps=1)
        >>> ds.features.shape, ds.scores.shape
        ((3072, 32), (3072,))
    """
    if density not in ("knn", "dmc"):
        raise ValueError(f"density must be 'knn' or 'dmc'; got {density!r}")
    t0 = time.perf_counter()
    f, p, y = scene_features(seed=seed, steps=steps)
    labels = y.reshape(-1)
    scores = _margin(p.transpose(0, 2, 3, 1).reshape(-1, p.shape[1]))
    if density == "knn":
        x = f.transpose(0, 2, 3, 1).reshape(-1, f.shape[1])
        ds = knn_dataset("scene", l2_rows(x), labels)
        ds.scores = scores
        return ds
    x, e, d = train_density_estimator(f, y, "dmc", steps=est_steps, seed=seed)
    return Dataset("scene_dmc", x, labels, e, time.perf_counter() - t0, density="dmc",
                   densities=d, scores=scores)


def load_datasets(quick: bool = True, seed: int = 0) -> list[Dataset]:
    """The data sets of the quick run (gmm, scene, scene_dmc, digits; the DMC
    trains for 100 Adam steps) or the full run (adds manifolds and the three
    featmap data sets; estimators train for 300 steps); ``seed`` seeds every
    generated data set (digits is fixed)."""
    steps = 100 if quick else 300
    out = [gmm_dataset(2000, seed=seed), scene_dataset("knn", seed=seed),
           scene_dataset("dmc", est_steps=steps, seed=seed)]
    if not quick:
        out.insert(1, manifold_dataset(3000, seed=seed))
        out += [featmap_dataset(density=d, steps=steps, seed=seed) for d in FEATMAP_DENSITIES]
    dg = digits_dataset()
    if dg is not None:
        out.append(dg)
    return out

