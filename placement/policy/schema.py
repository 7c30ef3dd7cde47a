"""JSON Schema for the YAML documents, generated from the same models the loader uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from placement.policy.loader import KINDS

SCHEMA_ID = "https://placement.dev/schema/v1alpha1"


def document_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per document kind, keyed by file name."""
    out: dict[str, dict[str, Any]] = {}
    for kind, model in KINDS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"{SCHEMA_ID}/{kind.lower()}.schema.json"
        out[f"{kind.lower()}.schema.json"] = schema
    refs = [{"$ref": f"{kind.lower()}.schema.json"} for kind in KINDS]
    out["document.schema.json"] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_ID}/document.schema.json",
        "title": "Any placement document (Site, Dataset, ClientLocation, Policy, Workload)",
        "oneOf": refs,
    }
    return out


def render(schema: dict[str, Any]) -> str:
    """Stable text form, so the committed files diff cleanly."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(out_dir: Path) -> list[Path]:
    """Write every schema file under `out_dir`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in document_schemas().items():
        path = out_dir / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
