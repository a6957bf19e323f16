"""Run configuration: one dataclass whose defaults are the paper's main setting.

The defaults reproduce "Ours (V2, 2.2 %)" on GTAV -> Cityscapes. A YAML file
under ``configs/`` sets only the fields a table row changes; ``--set
key=value`` on the command line overrides single fields after that. Unknown
keys are errors.

``source: custom`` trains on a data set of one's own (README.md, "A custom
data set"): ``num_classes`` and ``class_names`` give its classes and
``label_map`` sends the ids stored in its label files to train ids.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import yaml


@dataclass
class Config:
    # data
    source: str = "gtav"                 # "gtav" | "synthia" | "custom" (source and target
                                         # in the folder layout of datasets.folders)
    num_classes: int = 19                # 19 (GTAV) | 16 (SYNTHIA) | any, 1-255 (custom)
    class_names: tuple = ()              # custom: one name per train id
    label_map: dict = field(default_factory=dict)  # custom: label-file id -> train id; ids
                                         # not listed are ignored; empty: the files hold
                                         # train ids already (255 ignored)
    source_size: tuple = (1280, 720)     # (W, H) training resize of source images
    target_size: tuple = (1280, 640)     # (W, H) training and test resize of target images
    source_sampling: str = "balanced"    # "balanced" (rare classes more often) | "uniform"
    balance_temperature: float = 0.01
    source_free: bool = False            # no source data (Table 7); start from a source model
    # model
    arch: str = "deeplabv2"              # "deeplabv2" | "deeplabv3plus"
    backbone: str = "resnet101"          # "resnet101" | "tiny"
    freeze_bn: bool = True
    estimator: str = "dmc"               # "dmc" | "masked-conv" | "none"
    dmc_dim: int = 64
    dmc_kernel: int = 5
    beta: float = math.e ** 2.4
    tau: float = 0.25
    estimator_detach_iter: int = 18000   # estimator gradients stop reaching the backbone
    # optimisation
    iterations: int = 40000
    batch_source: int = 2
    batch_target: int = 2
    lr: float = 2.5e-4
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    # losses
    margin_weight: float = 1.0           # Eq. 6 on source; 0 switches it off
    margin: float = 1.0
    negative_threshold: float = 0.05
    negative_weight: float = 1.0
    consistency_weight: float = 0.1
    estimator_weight: float = 1.0
    # active selection
    selection_iters: tuple = (10000, 12000, 14000, 16000, 18000)
    budget: str = "ratio"                # "ratio" (regions, RIPU) | "pixels" (40 pixels)
    budget_ratio: float = 0.022
    budget_pixels: int = 40
    region_size: int = 3                 # 3 for ratio budgets, 1 for the pixel budget
    alpha: int = 20                      # candidates = alpha * budget (10 for 5 %)
    score: str = "margin"                # "margin" | "entropy" | "least_confidence" | "random" |
                                         # "ripu" (region impurity x prediction uncertainty)
    sampler: str = "density-aware"       # "density-aware" (the paper) | "k-center" |
                                         # "kmedoids-refinement" | "typicality" | "score-only" |
                                         # "ripu" (RIPU's pick-suppress-repeat on the score)
    region_overlap: str = "block"        # "block": RIPU's rule, regions of a round never
                                         # overlap; "allow": blocks may overlap
    oracle_exclude_void: bool = False    # ORACLE ablation, off by default: reads the ground
                                         # truth to keep void pixels out of the candidates
    greedy_backend: str = "auto"         # densecore greedy backend: "auto" | "torch" | "numba" |
                                         # "triton" ("auto" on CUDA: triton after a self-check)
    selection_batch: int = 8             # images per selection call (one farthest_first_batch)
    # evaluation and logging
    flip_test: bool = True
    eval_every: int = 0                  # 0: only at the end
    save_every: int = 2000
    print_freq: int = 50
    seed: int = 0
    extra: dict = field(default_factory=dict)  # free-form notes kept in checkpoints

    def validate(self) -> "Config":
        """Raise ``ValueError`` naming the field for inconsistent settings."""
        choices = {"source": ("gtav", "synthia", "custom"), "arch": ("deeplabv2", "deeplabv3plus"),
                   "backbone": ("resnet101", "tiny"),
                   "estimator": ("dmc", "masked-conv", "none"),
                   "budget": ("ratio", "pixels"),
                   "score": ("margin", "entropy", "least_confidence", "random", "ripu"),
                   "sampler": ("density-aware", "k-center", "kmedoids-refinement",
                               "typicality", "score-only", "ripu"),
                   "source_sampling": ("balanced", "uniform"),
                   "greedy_backend": ("auto", "torch", "numba", "triton"),
                   "region_overlap": ("block", "allow")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}")
        self._validate_classes()
        if self.sampler in ("density-aware", "typicality") and self.estimator == "none":
            raise ValueError(f"sampler {self.sampler!r} needs an estimator for its densities; "
                             "got estimator 'none'")
        if (not isinstance(self.selection_batch, int) or isinstance(self.selection_batch, bool)
                or self.selection_batch < 1):
            raise ValueError(f"selection_batch must be a positive integer; got "
                             f"{self.selection_batch!r}")
        iters = list(self.selection_iters)
        if iters != sorted(set(iters)) or (iters and iters[-1] >= self.iterations):
            raise ValueError(f"selection_iters must be increasing and below iterations "
                             f"({self.iterations}); got {iters}")
        return self

    def _validate_classes(self) -> None:
        if self.source != "custom":
            expected = {"gtav": 19, "synthia": 16}[self.source]
            if self.num_classes != expected:
                raise ValueError(f"num_classes must be {expected} for source {self.source!r}; "
                                 f"got {self.num_classes}")
            for name in ("class_names", "label_map"):
                if getattr(self, name):
                    raise ValueError(f"{name} is for source 'custom'; source {self.source!r} "
                                     f"has its own classes")
            return
        if (not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool)
                or not 1 <= self.num_classes <= 255):
            raise ValueError(f"num_classes must be an integer from 1 to 255 for source "
                             f"'custom'; got {self.num_classes!r}")
        names = self.class_names
        if (len(names) != self.num_classes or not all(isinstance(n, str) and n for n in names)
                or len(set(names)) != len(names)):
            raise ValueError(f"class_names must be {self.num_classes} distinct non-empty names "
                             f"(num_classes) for source 'custom'; got {list(names)}")
        if not isinstance(self.label_map, dict):
            raise ValueError(f"label_map must be a mapping of label-file id -> train id; "
                             f"got {self.label_map!r}")
        for raw, train_id in self.label_map.items():
            if not (isinstance(raw, int) and 0 <= raw < 65536):
                raise ValueError(f"label_map keys must be label-file ids from 0 to 65535; "
                                 f"got {raw!r}")
            if not (isinstance(train_id, int) and (0 <= train_id < self.num_classes
                                                   or train_id == 255)):
                raise ValueError(f"label_map values must be train ids from 0 to "
                                 f"{self.num_classes - 1} (or 255, ignored); got "
                                 f"{raw!r}: {train_id!r}")


def _coerce(name: str, value, default):
    if name == "label_map" and isinstance(value, dict):  # JSON stores the keys as text
        return {_int_or_same(k): _int_or_same(v) for k, v in value.items()}
    if isinstance(default, tuple):
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise ValueError(f"{name} must be a list; got {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{name} must be a boolean; got {value!r}")
            return value.lower() in ("true", "1", "yes")
        return bool(value)
    if isinstance(default, (int, float)) and isinstance(value, str):
        return type(default)(value)
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    return value


def _int_or_same(value):
    """``int(value)`` for digit strings, ``value`` otherwise (validation reports the rest)."""
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def config_from_dict(values: dict) -> Config:
    """The :class:`Config` stored in a checkpoint (``dataclasses.asdict`` of one)."""
    return _from_values(values, "the stored config has fields this code does not know: {}")


def load_config(path: str | None = None, overrides=()) -> Config:
    """Read a YAML file (may be None) into :class:`Config`, then apply ``key=value`` overrides."""
    values, overridden = {}, set()
    if path:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of config fields")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value; got {item!r}")
        key = key.strip()
        if key in overridden:
            raise ValueError(f"--set gives {key!r} more than once")
        overridden.add(key)
        values[key] = yaml.safe_load(raw)
    return _from_values(values, "unknown config fields {}; known fields: {known}")


def _from_values(values: dict, unknown_message: str) -> Config:
    """:class:`Config` from field values (coerced to the fields' types), validated."""
    defaults = Config()
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(unknown_message.format(unknown, known=sorted(known)))
    kwargs = {k: _coerce(k, v, getattr(defaults, k)) for k, v in values.items()}
    return dataclasses.replace(defaults, **kwargs).validate()
