"""Schemathesis over the OpenAPI document, against a real `placement serve`: every check, positive
and negative data, and the stateful phase that follows the document's links (from
`POST /v1/workloads` to the workload's sub-resources, from a created site or token to its own
operations). Any failure fails the test; the report names each one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import EXAMPLES
from .services import server

EXAMPLES_PER_OPERATION = int(os.environ.get("PLACEMENT_SCHEMATHESIS_EXAMPLES", "12"))
# Operations whose bodies (or cursor) must also agree with the stored state or with rules
# across fields that JSON Schema does not carry: a name must refer to an existing site,
# dataset or client location; PUT keeps the name of the path; a rag or inference workload
# needs its latency block; a cursor is one the server handed out. Their 422 says so (field
# and fix), and schema-valid data may get it; every other check still applies to them.
STATEFUL_422 = ["workloads-submit", "placements-preview", "workloads-list",
                "sites-create", "sites-replace", "datasets-create", "datasets-replace",
                "client-locations-create", "client-locations-replace"]
CONFIG = f"""
[checks.negative_data_rejection]
# A body over PLACEMENT_MAX_BODY_BYTES is refused before it is read: a rejection too.
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429", "5xx"]

[[operations]]
include-operation-id = {STATEFUL_422!r}
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409",
                                                     "422"]
""".replace("'", '"')


def _token(db: str, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "placement.cli", "token", "create",
                           "--database-url", db, *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.parametrize(("role", "examples"), [
    (["--role", "admin"], EXAMPLES_PER_OPERATION),
    (["--role", "member", "--team", "vision"], max(2, EXAMPLES_PER_OPERATION // 3)),
], ids=["as an admin", "as a member (403s documented too)"])
def test_the_api_conforms_to_its_openapi_document(tmp_path: Path, role: list[str],
                                                  examples: int) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        pytest.fail("schemathesis's `st` is not installed (pip install -e '.[dev]')")
    db = f"sqlite:///{tmp_path / 'p.db'}"
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    with server(db, EXAMPLES) as base:
        token = _token(db, *role)
        assert httpx.get(f"{base}/openapi.json", timeout=30).status_code == 200
        run = subprocess.run(
            [st, "--config-file", str(config), "run", f"{base}/openapi.json",
             "--header", f"Authorization: Bearer {token}", "--checks", "all", "--mode", "all",
             "--phases", "examples,coverage,fuzzing,stateful",
             "--max-examples", str(examples), "--seed", "20261203",
             "--workers", "1", "--no-shrink", "--request-timeout", "30",
             "--max-failures", "25", "--report", "junit", "--report-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-20000:]
    links = re.search(r"API Links:\s+(\d+) covered", out)
    assert links and int(links.group(1)) > 0, out[-3000:]  # the stateful phase followed links
