"""Shared test set-up: fixtures live in tests/fixtures, one module per kind of real part."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path

import pytest

from tests.fixtures.process_logs import LOGS, attach_logs

pytest_plugins = [
    "tests.fixtures.engines",
    "tests.fixtures.databases",
    "tests.fixtures.servers",
    "tests.fixtures.browser",
    "tests.fixtures.oidc",
]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

# New conversations that name no temperature are greedy in tests (the product samples at 0.7):
# a sampled reply's length and words vary from run to run, and a test that stops, compares or
# waits on a reply needs it long and the same every time. Tests of the shipped default name it
# (tests/client/test_contract.py); those that want variety ask for a temperature. Set on import,
# not in pytest_configure: pytest imports the conftests of the paths it is given (and their
# module-level settings) before it configures.
os.environ.setdefault("CHATBOT_DEFAULT_TEMPERATURE", "0")


def pytest_configure(config: pytest.Config) -> None:
    # Keep every test's SQLite files and exports out of the user's data folder, also in
    # subprocesses, which inherit the environment. Each xdist worker gets its own: workers
    # inherit the controller's environment, and two processes must not share one data folder.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:  # the controller (or the only process): last run's logs go
        shutil.rmtree(LOGS, ignore_errors=True)
    if worker is not None:
        os.environ["CHATBOT_DATA_DIR"] = tempfile.mkdtemp(prefix=f"chatbot-test-data-{worker}-")
    else:
        os.environ.setdefault("CHATBOT_DATA_DIR", tempfile.mkdtemp(prefix="chatbot-test-data-"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ARTIFACTS.mkdir(exist_ok=True)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots, benchmark output and other files a person may want to look at."""
    return ARTIFACTS


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test's report shows the logs of the servers it started."""
    report: pytest.TestReport = yield
    attach_logs(item, report)
    return report
