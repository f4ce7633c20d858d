"""conftest.py - pytest set-up for the reference tests: models fetched/generated once, zili must exist."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def models_ready():
    common.ensure_models(verbose=False)


@pytest.fixture(scope="session")
def zili_ready():
    path = common.zili_bin()
    if not os.access(path, os.X_OK):
        pytest.fail(f"zili binary {path} not found (build it with make, or set ZILI)")
    return path
