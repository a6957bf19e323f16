"""CPU selection speed (targets 1 and 2): engine vs naive gemv, sklearn and torch loops.

Density-aware greedy (Algorithm 1), n=100,000, D=64, budget 1,000, float32
Gaussian mixture. Every method starts from the same first pick and its
selection is compared with the engine's. The core lives in
``densecore.bench.speed`` (also run by ``densecore bench speed``).

    python benchmarks/speed.py --json benchmarks/results/speed.json
    python benchmarks/speed.py --quick
    python benchmarks/speed.py --contention   # idle and with every core busy, one run

``--contention`` runs the methods twice in one run: first as the machine is,
then while one bounded busy-loop subprocess per core keeps every core busy
(default methods: engine, engine_1thread, naive). Record ``uptime`` with it:
on a shared machine "idle" means "without the added load".
"""

from __future__ import annotations

from _common import base_parser, emit

from densecore.bench.speed import CAPTION, METHODS, run_contention, run_speed, table_columns


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="points (default 100000; quick 5000: a small pool, where the engine takes its plain loop)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--budget", type=int, default=None, help="picks (default 1000; quick 300)")
    p.add_argument("--repeats", type=int, default=None, help="default 3; quick 2")
    p.add_argument("--methods", nargs="+", default=None, choices=METHODS)
    p.add_argument("--contention", action="store_true",
                   help="also time every method while a busy loop runs on every core")
    p.add_argument("--baseline-picks", type=int, default=None,
                   help="picks timed for sklearn/torch_norm (default 200; quick 50)")
    args = p.parse_args(argv)
    q = args.quick
    n = args.n or (5_000 if q else 100_000)
    budget = args.budget or (300 if q else 1000)
    repeats = args.repeats or (2 if q else 3)
    picks = args.baseline_picks or (50 if q else 200)
    methods = args.methods or (["engine", "engine_1thread", "naive"] if args.contention
                               else list(METHODS))
    run = run_contention if args.contention else run_speed
    rows = run(n=n, dim=args.dim, budget=budget, seed=args.seed, repeats=repeats,
               methods=methods, baseline_picks=picks)
    emit("speed", rows, table_columns(rows), args.json, caption=CAPTION,
         config={"n": n, "dim": args.dim, "budget": budget, "repeats": repeats,
                 "baseline_picks": picks, "seed": args.seed,
                 "contention": args.contention})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
