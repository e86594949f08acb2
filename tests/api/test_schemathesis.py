"""The OpenAPI document is the truth: ``schemathesis run --checks all`` over all of it passes.

Every check runs against a real ``chatbot serve``: no 5xx; every status, content type and
header is declared; schema-valid requests are accepted and schema-invalid ones refused; an
undeclared method is a 405 with ``Allow``; a deleted conversation stays gone (the stateful
phase links the operations itself). The number of examples is bounded so the run takes a
couple of minutes on two cores; replies of one token keep generation cheap.

The CLI runs it (schemathesis' pytest loader does not run under this pytest, and the CLI is
what a user of the document would run).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.servers import BackendProcess

logger = logging.getLogger(__name__)
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES_PER_OPERATION = 8
_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]

# What schemathesis expects by default, and the exceptions no JSON Schema can state.
CONFIG = f"""
[checks.negative_data_rejection]
# An oversized body is refused by the body limit (413) before its schema is read.
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429", "5xx"]

[[operations]]
include-path = "/chat"
include-method = "POST"
# The seed's two history lists must be as long as each other: JSON Schema cannot say that.
checks.positive_data_acceptance.expected-statuses = {json.dumps([*_ACCEPTED, "400"])}

[[operations]]
include-path = "/v1/conversations/import"
include-method = "POST"
# `content` is a file (CSV, JSON) that only its parser can tell valid.
checks.positive_data_acceptance.expected-statuses = {json.dumps([*_ACCEPTED, "400"])}
"""


@pytest.mark.slow
def test_schemathesis_checks_all_pass(tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    env = {"CHATBOT_MAX_TOKENS_CAP": "2", "CHATBOT_DEFAULT_MAX_TOKENS": "1"}
    with BackendProcess(env) as backend:
        result = subprocess.run(
            [
                str(SCHEMATHESIS),
                "--config-file",
                str(config),
                "run",
                f"{backend.url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(EXAMPLES_PER_OPERATION),
                "--seed",
                "1",
                "--generation-deterministic",
                "--workers",
                "1",
                "--request-timeout",
                "60",
                "--output-truncate",
                "true",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=480,
            check=False,
        )
        log = result.stdout[-15_000:] + result.stderr[-3_000:]
        assert result.returncode == 0, log
        selected = re.search(r"Operations: +(\d+) selected / (\d+) total", result.stdout)
        assert selected is not None and selected[1] == selected[2], log
        assert int(selected[1]) >= 23, log  # the whole document
        assert backend.process.poll() is None, backend.log()
        # The per-check summary, for the record: ``pytest -rP --log-level=INFO`` shows it.
        logger.info("schemathesis summary:\n%s", result.stdout[-6_000:])
