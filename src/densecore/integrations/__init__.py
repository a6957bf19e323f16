"""Drop-ins for other training code and active-learning frameworks (docs/integrations.md).

* :mod:`densecore.integrations.ripu`: the paper's method in a RIPU-style
  training script (no extra dependency);
* :mod:`densecore.integrations.lightning`: a Lightning callback that runs the
  selection rounds (``pip install "densecore-seg[lightning]"``);
* :mod:`densecore.integrations.mmseg`: an mmengine hook that runs the
  selection rounds and a pipeline transform that feeds the labels to the
  dataset (``pip install "densecore-seg[mmseg]"``: mmengine only);
* :mod:`densecore.integrations.skactiveml`: scikit-activeml query strategies
  (``pip install "densecore-seg[skactiveml]"``).
"""
