"""Write the ImageNet ResNet-101 weights that ``train.py --pretrained`` loads.

The backbone in ``models.py`` has torchvision's parameter names, so the file
is torchvision's ``resnet101`` state dict without its ImageNet classifier
(``fc.*``), checked against the backbone before it is written (atomically).

From torchvision (``python -m pip install -e ".[examples,weights]"`` in the
repository root; downloads once into torch's cache, ``~/.cache/torch``)::

    python prepare_weights.py --out resnet101.pth                # IMAGENET1K_V1
    python prepare_weights.py --weights IMAGENET1K_V2 --out resnet101_v2.pth

From a file downloaded before, on a machine without network or torchvision
(torchvision's ``resnet101-*.pth``, or any checkpoint of a ResNet-101 with
torchvision names, bare or under ``model`` / ``state_dict``, ``module.``
prefixes allowed)::

    python prepare_weights.py --from resnet101-63fe2227.pth --out resnet101.pth

RIPU and the paper start from ImageNet weights of this kind; ``IMAGENET1K_V1``
(the original torchvision release) is the default.
"""

from __future__ import annotations

import argparse
import io

import torch

from densecore.io import atomic_write

import models


class WeightsError(ValueError):
    """Weights that cannot be read or do not fit; reported in one line, exit code 2."""


def torchvision_state(name: str) -> dict:
    """torchvision's ImageNet ``resnet101`` weights ``name`` (downloaded on first use)."""
    try:
        import torchvision
    except (ImportError, RuntimeError) as e:
        raise WeightsError(f"torchvision does not import ({e}); install it with "
                           f"'python -m pip install -e \".[weights]\"' in the repository root, "
                           f"or give a downloaded file with --from") from None
    try:
        weights = torchvision.models.ResNet101_Weights[name]
    except KeyError:
        known = [w.name for w in torchvision.models.ResNet101_Weights]
        raise WeightsError(f"--weights {name}: torchvision has {known}") from None
    return weights.get_state_dict(progress=True)


def convert(state: dict) -> dict:
    """The backbone's weights out of ``state`` (see :func:`models.load_resnet101_weights`).

    Returns a state dict with torchvision names, without ``fc.*``; raises
    :class:`WeightsError` if it does not fit ResNet-101.
    """
    try:
        kept = models.load_resnet101_weights(models.ResNet((3, 4, 23, 3)), state)
    except ValueError as e:
        raise WeightsError(str(e)) from None
    return {k: v.detach().clone().contiguous() for k, v in kept.items()}


def main(args) -> dict:
    """Read (``--from``) or fetch the weights, convert, write ``--out``; returns the state."""
    if args.source:
        try:
            state = torch.load(args.source, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise WeightsError(f"--from {args.source}: no such file") from None
        except Exception as e:  # pickle, zip and torch each raise their own kinds
            raise WeightsError(f"--from {args.source}: not a weights file torch can read "
                               f"({type(e).__name__})") from None
    else:
        state = torchvision_state(args.weights)
    try:
        state = convert(state)
    except WeightsError as e:
        raise WeightsError(f"{args.source or args.weights}: {e}") from None
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(args.out, buf.getvalue())
    print(f"{args.out}: {len(state)} tensors, "
          f"{sum(v.numel() for v in state.values()) / 1e6:.1f} M values "
          f"(ResNet-101 without fc); use it as --pretrained {args.out}")
    return state


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description="Write ImageNet ResNet-101 weights for "
                                                 "train.py --pretrained", add_help=add_help)
    parser.add_argument("--out", required=True, help="file to write, e.g. resnet101.pth")
    parser.add_argument("--from", dest="source", default=None, metavar="FILE",
                        help="convert this local checkpoint instead of asking torchvision")
    parser.add_argument("--weights", default="IMAGENET1K_V1",
                        help="torchvision's ResNet101_Weights member (default IMAGENET1K_V1)")
    return parser


if __name__ == "__main__":
    parser = get_args_parser()
    args = parser.parse_args()
    try:
        main(args)
    except WeightsError as e:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(e).split())}\n")
