"""Property-based API fuzzing from the OpenAPI schema at /schema with every schemathesis check (as
`schemathesis run --checks all` would): no 5xx, and every status code, media type, Allow header and
response body as the schema documents it; requests the schema calls valid are accepted.
(schemathesis generates the requests; its pytest plugin does not support pytest 9, so the operations
are driven with plain hypothesis.)"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

from api.app import create_app
from store.apikeys import create_key

# A schema-valid request may still be refused for what it means or for the server's state, which no schema can
# state: 409 (the case's step does not allow the action), 412 (the draft changed since its ETag was read), 422
# (RFC 9110: well-formed but unprocessable — an unknown problem type or grid, a draft that fails validation, a
# publish without a change note), 413 (the body passes the 256 KB limit, which OpenAPI cannot state: 500 patrols of 20
# photo URLs each are schema-valid). Everything else outside 2xx must be a malformed request.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "412", "413", "422", "429"]
# A schema-violating request is refused as malformed, or as too large before it is parsed (413), beside schemathesis's
# own list of refusals.
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    app = create_app(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}", background=False)
    key = create_key(app.state.services.policies.engine, [], "fuzz", "test")
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    schema.config.checks.positive_data_acceptance.expected_statuses = ACCEPTED
    schema.config.checks.negative_data_rejection.expected_statuses = REFUSED
    operations = [result.ok() for result in schema.get_all_operations()]
    load_all_checks()
    checks = [check for check in CHECKS.get_all() if check.__name__ != "max_response_time"]  # no timing in tests
    return operations, {"X-API-Key": key}, checks


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_its_schema_says(fuzz_target, mode):
    operations, auth, checks = fuzz_target
    assert len(operations) >= 15
    for operation in operations:
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(operation.as_strategy(generation_mode=mode))
        def check(case):
            for headers in (None, auth):  # anonymous and authorised
                case.call_and_validate(headers=headers, checks=checks)
        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: no parameters and no body
