"""When the numba engine hands over from pruning to dense passes, and back.

Pruning reads the features of the points the triangle inequality cannot rule out;
it pays on clustered data and stops paying on noise in many dimensions or on
densities that differ a lot. Dense passes cost a few nanoseconds per live point per
pick whatever the structure, after a one-time build of groups and byte codes.

:class:`HandOver` decides in two steps:

1. **The first hand-over** (building the groups): over windows of
   :data:`HandOver.WINDOW` picks after the first :data:`HandOver.WARMUP`, from
   pruning's measured seconds per pick against the estimated seconds of a dense
   pick (:data:`DENSE_SECONDS` per live point) and of the build
   (:data:`BUILD_SECONDS` per point). Pruning's cost is projected over the picks
   left: each time the picks double, it falls by the ratio by which the rows read
   per pick fell over the last doubling (at most 1; on clusters the rows read fall
   fast as every cluster gets a centre, on noise they stay). The groups are built
   when the projected saving of dense picks exceeds :data:`PAYBACK` builds, once
   the time pruning has already spent beyond what dense picks would have cost
   exceeds :data:`RENTAL` builds (ski rental: a build that turns out useless costs
   at most twice what pruning had already lost). Seconds decide the cost, not rows
   read: a row read costs 7-9 ns when the pool fits the cache and 15-50 ns when it
   does not (40k-185k x 64), while a dense pick costs 0.6-5 ns per live point and
   the build 0.2-2 us per point at every size measured (2 cores, 40k-185k x 8-64;
   ``benchmarks/handover.py``); the estimates are near the upper ends, so the rule
   builds only where pruning costs clearly more. Rows read only give the trend,
   which depends on the structure, not on the machine.
2. **Revisited from measured cost**: the first picks of a run say little about the
   thousands that follow (a structure of many small regions reads many rows early
   and few late). Once the groups exist, a swap costs one pass over the pool, so
   the choice is a paired trial every ``gap`` windows: the window just run in the
   current mode against the next window in the other mode, each on the thread
   count its own thread picker chose (as it would run); the cheaper per pick (by :data:`HandOver.MARGIN`) is kept. The second
   half runs pick by pick and ends as soon as it has cost more than the first half
   allows for a whole window, so a trial of a much dearer mode costs about one
   window of the current one. The first trial comes one window after the first
   hand-over; then the gap
   doubles while the trials agree with the choice (up to :data:`HandOver.MAX_GAP`)
   and falls back to :data:`HandOver.GAP` when one does not.

``policy`` ``"pruned"`` or ``"dense"`` fixes the mode (benchmarks compare the rule
with both); ``"auto"`` is the rule above.
"""

from __future__ import annotations

# Estimated costs of the dense mode (upper ends of those measured, module docstring):
# seconds per live point of one dense pick, seconds per point of building the groups
DENSE_SECONDS = 4.5e-9
BUILD_SECONDS = 2e-6
# the first hand-over: the projected saving must be PAYBACK builds, and the time
# pruning has already lost (against dense passes) RENTAL builds
PAYBACK = 2.0
RENTAL = 0.5
POLICIES = ("auto", "pruned", "dense")


def projected_saving(cost: float, dense: float, trend: float, made: int, end: int) -> float:
    """Seconds that dense picks (``dense`` each) would save over picks ``made .. end``
    against pruning at ``cost`` per pick now, its cost times ``trend`` each time the
    picks double.

    Example:
        >>> projected_saving(3.0, 1.0, 1.0, 100, 400)  # flat: 2 s saved on 300 picks
        600.0
        >>> projected_saving(3.0, 1.0, 0.5, 100, 400)  # 3, then 1.5 per pick: 200 + 100
        300.0
    """
    saved = 0.0
    while made < end:
        nxt = min(end, max(2 * made, made + 1))
        saved += max(0.0, cost - dense) * (nxt - made)
        if cost <= dense:
            break
        cost *= trend
        made = nxt
    return saved


class HandOver:
    """The pruned/dense choice of one engine, window by window.

    Args:
        n: points in the pool.
        max_new: picks the engine may make.
        policy: ``"auto"``, ``"pruned"`` or ``"dense"``.

    Example:
        >>> h = HandOver(1000, 500)
        >>> h.mode, h.next(100)
        ('pruned', 16)
        >>> for made in range(16, 129, 16):  # every row read, 62.5 us per pick
        ...     h.done("pruned", 16, 1e-3, 1, reads=16 * 1000, n_live=1000, made=made)
        >>> h.mode, h.built  # pruning has lost more time than the build costs: hand over
        ('dense', True)
    """

    WINDOW = 16  # picks per window
    WARMUP = 8  # the first picks read nearly every point: not counted
    GAP = 4  # windows between trials after the choice changes
    MAX_GAP = 256
    MARGIN = 0.75  # the other mode is taken when it costs below this share per pick
    MIN_LEFT = 4  # windows that must remain for a trial to be worth running

    def __init__(self, n: int, max_new: int, policy: str = "auto"):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}; got {policy!r}")
        self.n, self.max_new, self.policy = n, max_new, policy
        # whether the dense mode's groups exist (built at the first swap to it)
        self.built = policy == "dense"
        self.mode = "dense" if self.built else "pruned"
        self.trials = 0
        self._win = [0, 0, 0.0, set()]  # picks, rows read, seconds, thread counts
        self._home = None  # (mode, cost per pick, threads) of a trial's first half
        self.gap = self.GAP
        self.since = 0
        self._reads = []  # (picks made, rows read per pick) of the windows before the build
        self._excess = 0.0  # seconds spent beyond what dense passes would have cost

    def next(self, k: int) -> int:
        """Picks to run next in :attr:`mode`: at most ``k``, ending at a window's end;
        one at a time in a trial's second half (it ends as soon as it cannot win)."""
        if self._home is not None:
            return 1
        return max(1, min(k, self.WINDOW - self._win[0]))

    def done(self, mode: str, picks: int, seconds: float, threads: int, *, reads: int,
             n_live: int, made: int) -> None:
        """Record ``picks`` picks run in ``mode`` in ``seconds`` on ``threads`` threads,
        reading ``reads`` feature rows (pruned), with ``n_live`` points left and
        ``made`` picks made in all; :attr:`mode` is then the mode to run next."""
        w = self._win
        if not self.built and made - picks < self.WARMUP:  # the first picks: not counted
            return
        w[0] += picks
        w[1] += reads
        w[2] += seconds
        w[3].add(threads)
        left = self.max_new - made
        if self._home is not None and w[0] < self.WINDOW \
                and w[2] > self.MARGIN * self._home[1] * self.WINDOW:
            # the trial's second half already cost more than the first half would
            # allow for the whole window: it cannot win, end it now
            self._trial(mode, w[2] / w[0], w[3], left)
            self._win = [0, 0, 0.0, set()]
            return
        if w[0] < self.WINDOW:
            return
        if not self.built:
            self._first(w[2] / w[0], w[1] / w[0], n_live, left, made)
        elif self.policy == "auto":
            self._trial(mode, w[2] / w[0], w[3], left)
        self._win = [0, 0, 0.0, set()]

    def _first(self, cost: float, reads_per_pick: float, n_live: int, left: int,
               made: int) -> None:
        """Step 1 (module docstring): the first hand-over, from pruning's measured
        ``cost`` (seconds per pick) and ``reads_per_pick``."""
        half = [rp for m, rp in self._reads if m <= made // 2]
        self._reads.append((made, reads_per_pick))
        dense = DENSE_SECONDS * n_live  # estimated seconds of a dense pick
        self._excess += (cost - dense) * self.WINDOW
        if not half or self.policy != "auto" or left <= 0:
            return
        build = BUILD_SECONDS * self.n
        trend = min(1.0, reads_per_pick / half[-1]) if half[-1] > 0 else 1.0
        # ski rental: build only once pruning has already cost RENTAL builds beyond what
        # dense picks would have, and while its projected cost saves PAYBACK builds
        if self._excess > RENTAL * build and \
                projected_saving(cost, dense, trend, made, made + left) > PAYBACK * build:
            self.mode, self.built = "dense", True
            self.since, self.gap = 0, 1  # the first trial one window after the hand-over

    def _trial(self, mode: str, cost: float, threads: set, left: int) -> None:
        """Step 2 (module docstring): one window's cost per pick in ``mode``."""
        other = "pruned" if mode == "dense" else "dense"
        if self._home is None:  # an ordinary window; a trial's first half when due
            self.since += 1
            if self.since >= self.gap and left >= self.MIN_LEFT * self.WINDOW:
                self._home = (mode, cost, threads)
                self.mode = other
            return
        home, home_cost, _ = self._home
        self._home = None
        self.since = 0
        self.trials += 1
        if cost < self.MARGIN * home_cost:  # the other mode wins: stay there
            self.mode = mode
            self.gap = self.GAP
        else:
            self.mode = home
            self.gap = min(2 * self.gap, self.MAX_GAP)
