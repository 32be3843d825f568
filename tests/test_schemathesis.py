"""Property-based API fuzzing from the OpenAPI schema at /schema: no input may produce a 5xx.
(schemathesis generates the requests; its pytest plugin does not support pytest 9, so the operations
are driven with plain hypothesis.)"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from api.app import create_app
from store.apikeys import create_key


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    app = create_app(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}", background=False)
    key = create_key(app.state.services.policies.engine, [], "fuzz", "test")
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    return operations, {"X-API-Key": key}


def test_every_operation_is_fuzzed_without_server_errors(fuzz_target):
    operations, auth = fuzz_target
    assert len(operations) >= 15
    for operation in operations:
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(operation.as_strategy())
        def check(case):
            for headers in (None, auth):  # anonymous and authorised: never a 5xx
                response = case.call(headers=headers)
                assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"
        check()
