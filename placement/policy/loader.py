"""Load a directory of YAML documents into a validated bundle, reporting every error at once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from placement.errors import ConfigError, Issue
from placement.model import ClientLocation, Dataset, Inventory, Policy, Site, Workload
from placement.policy.refcheck import check_references
from placement.policy.yamlsrc import SourceDoc, format_path, read_yaml

KINDS: dict[str, type[BaseModel]] = {
    "Site": Site,
    "Dataset": Dataset,
    "ClientLocation": ClientLocation,
    "Policy": Policy,
    "Workload": Workload,
}


@dataclass
class Bundle:
    """A validated set of documents: inventory, the policy and any workloads."""

    inventory: Inventory
    policy: Policy
    workloads: list[Workload]
    policy_version: str
    origin: dict[tuple[str, str], tuple[SourceDoc, int]] = field(default_factory=dict)


def policy_version(policy: Policy) -> str:
    """Content hash of the policy: the same rules give the same version wherever loaded."""
    canon = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canon.encode()).hexdigest()[:16]


def yaml_files(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """Every .yaml/.yml file under the given files or directories, sorted, with display names.

    Hidden files and directories are skipped: `.git`, and a mounted ConfigMap's `..data` and
    timestamped `..2026_...` directories (its visible files are symlinks into them; an old
    timestamped directory can linger during an update and must not load twice).
    """
    out: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for root in paths:
        found = (sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml")
                        and not any(part.startswith(".")
                                    for part in p.relative_to(root).parts))
                 if root.is_dir() else [root])
        for p in found:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                out.append((p, str(p)))
    return out


def _fix_for(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"add the field '{err['loc'][-1]}'"
    if kind == "extra_forbidden":
        return "remove it or correct its spelling (policies/schema lists the allowed fields)"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
              "less_than": "<"}[kind]
        limit = next(iter(ctx.values()), "")
        return f"use a value {op} {limit}"
    if kind.endswith("_parsing") or kind.endswith("_type"):
        return f"write a {kind.split('_')[0]} value"
    if kind == "literal_error":
        return f"use one of {ctx.get('expected', 'the allowed values')}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"set '{ctx.get('discriminator', 'type')}' to one of {ctx.get('expected_tags', '')}"
    if kind == "string_pattern_mismatch":
        return "use lower-case letters, digits, '-' and '.' (start and end alphanumeric)"
    if kind == "too_short":
        return f"give at least {ctx.get('min_length', 1)} item(s)"
    if kind == "value_error":
        return "see the message"
    return "correct the value"


def _message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
        shown = repr(err["input"])
        if len(shown) <= 60:
            msg += f" (got {shown})"
    return msg


def validation_issues(doc: SourceDoc, exc: ValidationError, prefix: str) -> list[Issue]:
    """Turn pydantic errors into located issues."""
    issues = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
        clean = tuple(p for p in loc if p not in ("onprem", "cloud") or p == loc[-1])
        issues.append(
            Issue(
                doc.file,
                doc.line_of(loc),
                f"{prefix}{format_path(clean)}",
                _message(err),
                _fix_for(err),
            )
        )
    return issues


def parse_documents(paths: Iterable[Path]) -> tuple[dict[str, list[tuple[Any, SourceDoc]]],
                                                        list[Issue]]:
    """Parse and type-check every document; group the valid ones by kind."""
    by_kind: dict[str, list[tuple[Any, SourceDoc]]] = {k: [] for k in KINDS}
    # Documents that failed type checks are kept as raw data under "invalid-<Kind>" so their
    # references can still be checked: every error is reported in one pass.
    issues: list[Issue] = []
    for path, display in yaml_files(paths):
        docs, problems = read_yaml(path, display)
        issues.extend(problems)
        if not docs and not problems:
            issues.append(Issue(display, 1, "", "the file holds no YAML documents",
                                "add its documents, or delete the file"))
        for doc in docs:
            if not isinstance(doc.data, dict):
                issues.append(Issue(doc.file, doc.line, "", "a document must be a mapping",
                                    "start it with 'kind:', 'metadata:' and 'spec:'"))
                continue
            kind = doc.data.get("kind")
            if kind not in KINDS:
                shown = "missing" if kind is None else repr(kind)
                issues.append(Issue(doc.file, doc.line_of(("kind",)), "kind",
                                    f"unknown kind ({shown})",
                                    f"set kind to one of {', '.join(KINDS)}"))
                continue
            name = doc.data.get("metadata", {}).get("name") if isinstance(
                doc.data.get("metadata"), dict) else None
            prefix = f"{kind} {name!r} " if name else f"{kind} "
            try:
                obj = KINDS[kind].model_validate(doc.data)
            except ValidationError as exc:
                issues.extend(validation_issues(doc, exc, prefix))
                by_kind.setdefault(f"invalid-{kind}", []).append((doc.data, doc))
                continue
            by_kind[kind].append((obj, doc))
    return by_kind, issues


def load_bundle(config: Path, extra: Iterable[Path] = ()) -> Bundle:
    """Load and validate a configuration directory (plus extra workload files).

    Raises ConfigError listing every problem found.
    """
    if not config.exists():
        raise ConfigError([Issue(str(config), 0, "", "no such file or directory",
                                 "pass the directory holding your Site/Policy YAML")])
    by_kind, issues = parse_documents([config, *extra])
    issues.extend(check_references(by_kind))
    policies = by_kind["Policy"]
    if len(policies) > 1:
        first = policies[0][1]
        for _, doc in policies[1:]:
            issues.append(Issue(doc.file, doc.line, "Policy", "more than one Policy document "
                                f"(the first is at {first.file}:{first.line})",
                                "merge the rules into one Policy"))
    if not by_kind["Site"] and not any(i.path.startswith("Site") for i in issues):
        issues.append(Issue(str(config), 0, "", "no Site documents found",
                            "add at least one 'kind: Site' document"))
    if not policies and not any(i.path.startswith("Policy") for i in issues):
        issues.append(Issue(str(config), 0, "", "no Policy document found",
                            "add a 'kind: Policy' document (rules may be empty: "
                            "`spec: {rules: []}`)"))
    if issues:
        raise ConfigError(issues)
    policy = policies[0][0]
    origin: dict[tuple[str, str], tuple[SourceDoc, int]] = {}
    for kind, items in by_kind.items():
        for obj, doc in items:
            origin[(kind, obj.metadata.name)] = (doc, doc.line)
    inventory = Inventory(
        sites=[o for o, _ in by_kind["Site"]],
        datasets=[o for o, _ in by_kind["Dataset"]],
        client_locations=[o for o, _ in by_kind["ClientLocation"]],
    )
    workloads = [o for o, _ in by_kind["Workload"]]
    return Bundle(inventory, policy, workloads, policy_version(policy), origin)
