"""CPU farthest-first engine in numba, exact: one engine class over four modes.

* ``plain`` (:mod:`.plain_kernels`): pools of at most ``engine.PLAIN_MAX`` points,
  one serial pass per pick.
* ``weighted``: candidate weights (typicality), one parallel fused pass per pick.
* ``pruned`` (:mod:`.pruned_kernels`): coverage areas and the triangle inequality.
* ``dense`` (:mod:`.dense_kernels`): one pass per pick over groups of nearby points
  with byte codes; the hand-over between pruned and dense passes is a mode swap
  (:mod:`.handover`).

:mod:`.modes` holds the mode objects, :mod:`.engine` the :class:`Engine` of the
table, :mod:`.common` the distance kernels and the state record's named fields.
All kernels take contiguous numpy arrays; :class:`Engine` converts its tensors
once. Distances are squared Euclidean, accumulated in the feature dtype from
differences (no norm expansion, so duplicates tie exactly).
"""

from .engine import Engine

__all__ = ["Engine"]
