"""Selection rounds inside a Lightning training run: :class:`SelectionRounds`.

The callback runs round ``r`` when the trainer's ``global_step`` reaches
``rounds_at[r]`` (before that step's batch), writes the new labels to an
:class:`~densecore.ActiveLabelState` on disk, and lets training continue on
them. Install with ``pip install "densecore-seg[lightning]"``.

The model's outputs for the target images come from a hook, in this order of
precedence:

* ``outputs=fn``: ``fn(pl_module, image_ids, round)``;
* else a method of the LightningModule: ``pl_module.selection_outputs(image_ids, round)``.

Either gets ``image_ids`` (a list of the state's ids, those of this rank
whose round is not yet on disk) and returns an iterable of mappings, one per
batch, each with

* ``"image_ids"``: the ``B`` ids of the batch (each requested id exactly once
  over all batches);
* ``"probs"``: ``(B, C, H, W)`` class probabilities at the state's resolution
  (logits with ``from_logits=True``);
* ``"features"``: ``(B, D, h, w)`` feature map;
* ``"densities"``: ``(B, h, w)`` coverage densities (``> 0``), or None for a
  sampler that takes none;
* optionally ``"labels"``: ``(B, H, W)`` int class maps (the annotator's
  answers; only the queried pixels are stored) and ``"ignore"``: ``(B, H, W)``
  bool, pixels never to query.

The hook runs with the module in eval mode (restored afterwards) and without
gradients. After every rank has recorded its images and passed a barrier,
``pl_module.on_selection_round_end(round, state)`` is called when the module
defines it (to reload labels a dataset caches); a dataset that reads
``state.labels(image_id)`` sees the new labels directly (the state re-reads
its manifest when another process replaced it).

Distributed (DDP): rank ``k`` of ``n`` selects for the images at positions
``k, k + n, ...`` of ``state.image_ids`` and writes them itself (the state's
writers serialise through a file lock, so every image is written once, by
one rank); ``root`` must be on a file system every rank sees. A barrier
follows, and every rank then checks that the whole round is on disk.

Resume: a round is done when every image has it on disk. At the start of
training (also from a checkpoint) and at each step, every round whose step
has been reached and that is not done runs, for its missing images only;
finished rounds are never redone.

Shape:
    see the hook's mapping above; ``H, W`` equal the state's shape per image.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch

import densecore
from densecore import validation as V
from densecore.samplers.names import canonical_name

try:
    from lightning.pytorch import Callback
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("densecore.integrations.lightning needs lightning: "
                      "pip install \"densecore-seg[lightning]\"") from exc

log = logging.getLogger(__name__)

__all__ = ["SelectionRounds"]

_HOOK = "selection_outputs"
_END = "on_selection_round_end"
_KEYS = ("image_ids", "probs", "features")  # "densities", "labels", "ignore": optional
_SCORES = ("entropy", "least_confidence", "margin", "random", "ripu")  # select_pixels' names


class SelectionRounds(Callback):
    """Run selection rounds at given global steps of a Lightning run.

    Args:
        state: the run's :class:`~densecore.ActiveLabelState` (every image id
            of it is a target image).
        rounds_at: strictly increasing global steps, one per round (the paper:
            10000, 12000, 14000, 16000, 18000 of 40000).
        budget: picks per image per round (pixels, or regions with
            ``region_size > 1``), e.g. :func:`~densecore.region_budget`.
        outputs: ``fn(pl_module, image_ids, round)`` giving the batches, or
            None to call ``pl_module.selection_outputs(image_ids, round)``.
        sampler, seed, alpha, score, region_size, region_overlap, from_logits:
            as in :func:`~densecore.query_round` (default sampler:
            :data:`~densecore.samplers.DEFAULT_SAMPLER`, seeded per image); ``score``
            by name only. Every option is checked here, so a bad one fails
            before training starts, not at the first round.

    Raises:
        TypeError, ValueError: naming the option that is not valid.

    Example:
        >>> import tempfile, densecore
        >>> state = densecore.ActiveLabelState(tempfile.mkdtemp(), ["a", "b"], (8, 8))
        >>> SelectionRounds(state, rounds_at=[10, 20], budget=4)
        SelectionRounds(rounds_at=[10, 20], budget=4, done=0)
    """

    def __init__(self, state: densecore.ActiveLabelState, rounds_at: Sequence[int],
                 budget: int, *, outputs=None, sampler=densecore.samplers.DEFAULT_SAMPLER,
                 seed: int = 0, alpha: float = 20, score="margin", region_size: int = 1,
                 region_overlap: str = "block", from_logits: bool = False) -> None:
        if not isinstance(state, densecore.ActiveLabelState):
            raise TypeError(f"state must be a densecore.ActiveLabelState; got "
                            f"{type(state).__name__}")
        steps = V.check_steps(rounds_at, "rounds_at", "global steps")
        if outputs is not None and not callable(outputs):
            raise TypeError(f"outputs must be callable (pl_module, image_ids, round) or None; "
                            f"got {type(outputs).__name__}")
        budget = V.check_int(budget, "budget", minimum=0)
        smallest = min(h * w for h, w in (state.shape(i) for i in state.image_ids))
        if budget > smallest:  # a pick (pixel or region centre) is a pixel
            raise ValueError(f"budget must be at most the {smallest} pixels of the smallest "
                             f"image of the state; got {budget}")
        # every option of query_round checked now, not at the first round mid-training
        if isinstance(sampler, str):
            sampler = canonical_name(sampler)  # ValueError naming sampler and the names
        elif sampler is not None and not callable(sampler) and \
                not callable(getattr(sampler, "select", None)):
            raise TypeError(f"sampler must be a sampler, a sampler class or factory taking "
                            f"seed=, a sampler name or None; got {type(sampler).__name__} "
                            f"{sampler!r}")
        seed = V.check_int(seed, "seed", minimum=0)
        alpha = V.check_finite_float(alpha, "alpha", minimum=1.0)
        score = V.check_choice(score, _SCORES, "score")
        region_size = V.check_region_size(region_size)
        region_overlap = V.check_choice(region_overlap, ("allow", "block"), "region_overlap")
        from_logits = V.check_bool(from_logits, "from_logits")
        self.state = state
        self.rounds_at = steps
        self.budget = budget
        self.outputs = outputs
        self.options = {"sampler": sampler, "seed": seed, "alpha": alpha, "score": score,
                        "region_size": region_size, "region_overlap": region_overlap,
                        "from_logits": from_logits}
        self.done = 0  # rounds known to be complete on disk

    def __getstate__(self) -> dict:
        # strategy="ddp_spawn" pickles the callbacks; the state holds a lock, so its root travels
        d = dict(self.__dict__)
        d["state"] = self.state.root
        return d

    def __setstate__(self, d: dict) -> None:
        self.__dict__.update(d)
        self.state = densecore.ActiveLabelState(d["state"])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(rounds_at={self.rounds_at}, budget={self.budget}, "
                f"done={self.done})")

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.outputs is None and not callable(getattr(pl_module, _HOOK, None)):
            raise TypeError(f"{type(pl_module).__name__} has no {_HOOK}(image_ids, round) "
                            f"method; define it or pass outputs= to SelectionRounds")

    def on_train_start(self, trainer, pl_module) -> None:
        self.done = 0
        while self.done < len(self.rounds_at) and self.round_complete(self.done):
            self.done += 1
        log.info("%d of %d selection rounds already on disk", self.done, len(self.rounds_at))
        self._catch_up(trainer, pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._catch_up(trainer, pl_module)

    # ------------------------------------------------------------------ the rounds
    def round_complete(self, round: int) -> bool:
        """True when every image of the state has ``round`` on disk."""
        return not self.state.images_without(round)

    def _catch_up(self, trainer, pl_module) -> None:
        while self.done < len(self.rounds_at) and \
                trainer.global_step >= self.rounds_at[self.done]:
            self.run_round(trainer, pl_module, self.done)
            self.done += 1

    def run_round(self, trainer, pl_module, round: int) -> None:
        """Select this rank's missing images of ``round``, then wait for every rank."""
        ids = self.state.image_ids
        mine = [i for i in ids[trainer.global_rank::trainer.world_size]
                if not self.state.round_done(i, round)]
        if mine:
            self._select(pl_module, mine, round)
        trainer.strategy.barrier("densecore_selection_round")
        self.state.require_round(round, "every rank has finished: is the label state's "
                                        "root shared by all ranks?")
        log.info("selection round %d done at step %d", round, trainer.global_step)
        end = getattr(pl_module, _END, None)
        if callable(end):
            end(round, self.state)

    def _select(self, pl_module, mine: list[str], round: int) -> None:
        hook = (lambda ids, r: self.outputs(pl_module, ids, r)) if self.outputs is not None \
            else getattr(pl_module, _HOOK)
        wanted = set(mine)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                for batch in hook(list(mine), round):
                    if not isinstance(batch, Mapping):
                        raise TypeError(f"{_HOOK} must yield mappings with the keys "
                                        f"{list(_KEYS)}; got {type(batch).__name__}")
                    missing = [k for k in _KEYS if k not in batch]
                    if missing:
                        raise ValueError(f"{_HOOK} must yield mappings with the keys "
                                         f"{list(_KEYS)}; key {missing[0]!r} is missing")
                    unknown = [i for i in batch["image_ids"] if i not in wanted]
                    if unknown:
                        raise ValueError(f"{_HOOK} returned image id {unknown[0]!r}, which "
                                         f"was not requested for round {round} on this rank")
                    densecore.query_round(
                        self.state, round, batch["image_ids"], batch["probs"],
                        batch["features"], batch.get("densities"), self.budget,
                        labels=batch.get("labels"), ignore=batch.get("ignore"),
                        **self.options)
        finally:
            pl_module.train(was_training)
        left = [i for i in mine if not self.state.round_done(i, round)]
        if left:
            raise ValueError(f"{_HOOK} gave no outputs for {len(left)} requested images of "
                             f"round {round} (first: {left[0]!r})")
