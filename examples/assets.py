"""Where the PyPI packages that ship demo files (models, corpora, labelled data) are installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it (some need missing deps)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package '{name}' is not installed: run `make install`")
    return Path(spec.submodule_search_locations[0])
