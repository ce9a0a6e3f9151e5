"""Shared fixtures, and the CI rule: under CI=true a skipped test is a failed test.

Tests that need a real component (sockperf, PostgreSQL, SLURM, Chromium) may skip on a
developer's machine that lacks it, but CI installs every one, so a skip there means a
missing install step. Only tests marked ``gpu`` may skip in CI: CI never has a GPU.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _in_ci() and item.get_closest_marker("gpu") is None:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {reason}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a GPU; the only tests allowed to skip in CI")


def require_executable(name: str) -> str:
    """Path of ``name`` on PATH, or skip (a failure under CI=true)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found on PATH")
    return path


@pytest.fixture(scope="session")
def pg(request: pytest.FixtureRequest):
    """A running throwaway PostgreSQL server (tests/postgres_server.py), one per session."""
    pytest.importorskip("psycopg")
    pytest.importorskip("psycopg_pool")
    from postgres_server import find_binaries, session_server

    if find_binaries() is None:
        pytest.skip("PostgreSQL binaries not found (Debian package postgresql)")
    return session_server(request.config)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def prepared_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All nine datasets prepared from the mirror as the workflow's `dataset` jobs do
    (results/datasets layout), once per session."""
    from forgebench.datasets import DATASET_NAMES, prepare

    root = tmp_path_factory.mktemp("datasets")
    for name in DATASET_NAMES:
        prepare(name, mirror=SHARED_DATASETS, allow_online=False, out_dir=root / name)
    return root
