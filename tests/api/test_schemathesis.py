"""Property-based fuzzing of every documented operation: whatever comes in, never a 5xx.

Cases are drawn per operation with Hypothesis directly (schemathesis' pytest fixture loader
does not run under this pytest), so the app's lifespan runs once around all of them.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.api.conftest import AppFactory

EXAMPLES_PER_OPERATION = 15


@pytest.mark.slow
def test_no_server_errors(make_app: AppFactory) -> None:
    # Replies of one or two tokens keep a few hundred cases within a couple of minutes.
    app = make_app(limits={"max_tokens_cap": 2, "default_max_tokens": 1})
    with TestClient(app):  # runs the lifespan: the app is ready while the cases run
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        results: list[Any] = list(schema.get_all_operations())
        operations = [result.ok() for result in results]
        assert len(operations) >= 18
        calls = 0
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                # A shared CPU can be slow; a hang would still fail at the test timeout.
                case.call_and_validate(checks=[not_a_server_error], timeout=120)

            run()
        assert calls >= 200
        assert app.state.runtime.ready.is_set()
