"""YAML reading that remembers the line of every value, so errors can say file:line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from placement.errors import Issue

PathKey = tuple[str | int, ...]


@dataclass
class SourceDoc:
    """One YAML document with plain data and a map from field path to 1-based line."""

    file: str
    index: int
    line: int
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int:
        """Line of `path`, or of its closest ancestor present in the document."""
        probe: list[str | int] = []
        best = self.line
        node = self.data
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:  # union tags and missing fields: keep the closest known line
                continue
            probe.append(part)
            best = self.lines.get(tuple(probe), best)
        return best


class _Builder:
    """Turns a composed node tree into plain Python data and records lines."""

    def __init__(self, doc: SourceDoc, issues: list[Issue]) -> None:
        self.doc = doc
        self.issues = issues
        self.loader = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.doc.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str | int):
                    key = str(key)
                if key in out:
                    self.issues.append(
                        Issue(
                            self.doc.file,
                            key_node.start_mark.line + 1,
                            _fmt((*path, key)),
                            f"key {key!r} appears twice in the same mapping",
                            "keep one of them",
                        )
                    )
                out[key] = self.build(value_node, (*path, key))
                self.doc.lines[(*path, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, (*path, i)) for i, v in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def _fmt(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


format_path = _fmt


def read_yaml(path: Path, display: str) -> tuple[list[SourceDoc], list[Issue]]:
    """Parse every document in a YAML file; syntax errors come back as issues."""
    issues: list[Issue] = []
    docs: list[SourceDoc] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Issue(display, 0, "", f"cannot read the file ({exc})", "check the file")]
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        issues.append(
            Issue(display, line, "", f"malformed YAML: {problem}", "correct the YAML syntax")
        )
        return [], issues
    for index, node in enumerate(nodes):
        if node is None:
            continue
        doc = SourceDoc(display, index, node.start_mark.line + 1, None)
        try:
            doc.data = _Builder(doc, issues).build(node, ())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else doc.line
            issues.append(Issue(display, line, "", f"malformed YAML: {exc}", "correct the value"))
            continue
        if doc.data is not None:
            docs.append(doc)
    return docs, issues
