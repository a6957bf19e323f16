"""Backends: plain functions, one module each. numba and faiss are imported lazily."""
