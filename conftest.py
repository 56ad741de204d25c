"""Collection rules shared by ``tests/`` and the doctests of ``src/`` (``--doctest-modules``).

A module that needs an optional extra is left out of doctest collection when that
extra is missing, instead of failing to import.
"""

from __future__ import annotations

import importlib.util

#: module file (relative to this directory) -> the optional package it imports at the top
OPTIONAL_IMPORTS = {
    "src/ogmge/interfaces/lightning.py": "lightning",
}

collect_ignore = [path for path, package in OPTIONAL_IMPORTS.items() if importlib.util.find_spec(package) is None]
