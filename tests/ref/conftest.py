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


def pytest_configure(config):
    global _CONFIG
    _CONFIG = config


_CONFIG = None


def pytest_runtest_logreport(report):
    """Shows what each test printed (its figures: errors, tokens matched, perplexities) under -q as well."""
    if report.when != "call" or not report.capstdout or _CONFIG is None:
        return
    tr = _CONFIG.pluginmanager.get_plugin("terminalreporter")
    if tr is None:
        return
    for line in report.capstdout.rstrip().splitlines():
        tr.write_line(f"    {line}")
