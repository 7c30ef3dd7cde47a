"""Property-based run over the OpenAPI spec (schemathesis): no generated request gets a 5xx."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from .conftest import api_on

EXAMPLES_PER_OPERATION = int(os.environ.get("PLACEMENT_SCHEMATHESIS_EXAMPLES", "20"))


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    with api_on(f"sqlite:///{tmp_path / 'p.db'}") as api:
        schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
        failures: list[str] = []
        statuses: list[int] = []
        operations = 0
        for result in schema.get_all_operations():
            operation = result.ok()  # type: ignore[union-attr]
            operations += 1

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), database=None)
            def run(case: Any) -> None:
                for who in ("admin", "vision"):
                    res = case.call(headers={"Authorization": f"Bearer {api.tokens[who]}"})
                    statuses.append(res.status_code)
                    if res.status_code >= 500:
                        failures.append(f"{case.method} {case.formatted_path} as {who}: "
                                        f"{res.status_code} {res.text[:300]}")

            run()
        assert operations >= 20 and len(statuses) >= operations * 4
        assert any(200 <= s < 300 for s in statuses)  # some generated requests got through
        assert not failures, "\n".join(failures[:10])
