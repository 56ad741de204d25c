"""Shared helpers of the test suite, one importable package (``pythonpath = ["tests"]`` in
pyproject.toml): ``from support.compare_data import tiny_npz``."""
