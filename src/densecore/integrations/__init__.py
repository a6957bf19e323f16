"""Adapters that plug densecore's samplers into other active-learning frameworks.

Each adapter is an optional module with its own extra:
:mod:`densecore.integrations.skactiveml` (``pip install "densecore-seg[skactiveml]"``).
"""
