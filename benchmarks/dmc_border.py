"""DMC border rule and error normalisation: border bias, calibration and the bound.

For each border rule (``renormalize``: softmax over in-image taps; ``zero``:
the paper's zero padding) a DMC estimator (dim 16, K 5, 300 Adam steps, aux
loss on 10 % of the labels) is trained on the street-scene target features of
``densecore.synthetic.scene_features`` and on ``synthetic.feature_map`` maps
(2 x 30 x 32, 8 regions; i.i.d. noise, so no border effect of their own),
seeds 0-2. Reported per run:

* ``border_ratio``: mean reconstruction error on the outer ring of pixels
  (distance to the image edge < K//2) over the mean error inside;
* ``border_low_share``: share of the lowest-density decile that lies on that
  ring, against the ring's share of all pixels (``ring_share``);
* for each normalisation (``minmax``, the paper's rule, and ``rank``): the
  spread of the densities (``dens_p10``, ``dens_p90`` of density / beta), the
  supplementary calibration R^2 (U(0.5, 3) draw; R^2 against 1/density and
  against the area radius) and the max ARD of density-aware greedy (paper's
  tau) over k-center's at b = 50, same population.

    python benchmarks/dmc_border.py --json benchmarks/results/dmc_border.json
"""

from __future__ import annotations

import time

import numpy as np
from _common import base_parser, machine_info, write_json_atomic
from bounds_data import train_density_estimator

from densecore import DensityAwareGreedy, KCenterGreedy, bound_report, coverage_density
from densecore.bench.report import markdown_table
from densecore.density import BETA, supplementary_calibration
from densecore.synthetic import feature_map, scene_features


def _data(name: str, seed: int):
    if name == "scene":
        f, _, y = scene_features(seed=seed)
        return f, y
    f, y, _ = feature_map(2, 16, 30, 32, n_regions=8, seed=seed)
    return f / np.linalg.norm(f, axis=1, keepdims=True), y


def run(seeds, steps: int, budget: int = 50, data: str = "scene") -> list[dict]:
    rows = []
    for seed in seeds:
        f, y = _data(data, seed)
        b, _, h, w = f.shape
        k = 5
        yy, xx = np.mgrid[0:h, 0:w]
        ring = ((np.minimum(yy, h - 1 - yy) < k // 2) | (np.minimum(xx, w - 1 - xx) < k // 2))
        ring = np.broadcast_to(ring, (b, h, w)).reshape(-1)
        for border in ("renormalize", "zero"):
            x, e, _ = train_density_estimator(f, y, "dmc", steps=steps, seed=seed,
                                              est_kwargs={"border": border})
            row = {"data": data, "seed": seed, "border": border,
                   "border_ratio": float(e[ring].mean() / e[~ring].mean()),
                   "ring_share": float(ring.mean())}
            kc = bound_report(x, KCenterGreedy(seed=seed).select(x, budget).indices, y.reshape(-1))
            for norm in ("minmax", "rank"):
                d = coverage_density(e.reshape(b, h, w), dims=(1, 2), normalize=norm).reshape(-1)
                low = d <= np.quantile(d, 0.1)
                row[f"{norm}_border_low_share"] = float(ring[low].mean())
                row[f"{norm}_dens_p10"] = float(np.quantile(d, 0.1) / BETA)
                row[f"{norm}_dens_p90"] = float(np.quantile(d, 0.9) / BETA)
                try:
                    cal = supplementary_calibration(x, d, seed=seed)
                    row[f"{norm}_r2"], row[f"{norm}_r2_radius"] = cal.r2, cal.r2_radius
                    row[f"{norm}_points"] = cal.n_points
                except ValueError:
                    row[f"{norm}_r2"] = row[f"{norm}_r2_radius"] = float("nan")
                    row[f"{norm}_points"] = 0
                sel = DensityAwareGreedy(seed=seed).select(x, budget, densities=d).indices
                rep = bound_report(x, sel, y.reshape(-1))
                row[f"{norm}_ard_vs_kcenter"] = rep.max_ard / kc.max_ard
                row[f"{norm}_loss_vs_kcenter"] = rep.coreset_loss / kc.coreset_loss
            rows.append(row)
    return rows


COLUMNS = ["data", "seed", "border", "border_ratio", "ring_share", "minmax_border_low_share",
           "rank_border_low_share", "minmax_dens_p10", "minmax_dens_p90", "rank_dens_p10",
           "rank_dens_p90", "minmax_r2", "minmax_r2_radius", "rank_r2", "rank_r2_radius",
           "minmax_points", "rank_points", "minmax_ard_vs_kcenter", "rank_ard_vs_kcenter",
           "minmax_loss_vs_kcenter", "rank_loss_vs_kcenter"]


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["scene", "featmap"],
                   help="scene (CNN features of street scenes) and/or featmap "
                   "(synthetic.feature_map: i.i.d. noise per region, no CNN border effects)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = [r for d in args.data
            for r in run((0,) if args.quick else (0, 1, 2), 100 if args.quick else 300,
                         data=d)]
    print(markdown_table(rows, COLUMNS))
    print(f"total {time.perf_counter() - t0:.1f} s")
    if args.json:
        write_json_atomic(args.json, {"benchmark": "dmc_border", "machine": machine_info(),
                                      "quick": args.quick, "rows": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
