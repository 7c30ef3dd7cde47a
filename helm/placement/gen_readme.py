"""Write the chart's README.md from values.yaml: one table row per value, from its `# --`
comment (and the `#` lines that continue it), with its type and default.

A key with a `# --` comment is one value, whatever it holds (a map such as `resources` is
documented as a whole). A key without one must be a non-empty map whose keys are documented
in turn; anything else is an undocumented value, and an error.

    python helm/placement/gen_readme.py           # rewrite helm/placement/README.md
    python helm/placement/gen_readme.py --check   # exit 1 when README.md is out of date

Needs only PyYAML. The tests compare README.md with `render()`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")
MARK = "# --"

INTRO = """\
# The `placement` Helm chart

{description}

It installs the Workload and Site CRDs, the REST API, the operator and their RBAC, and
optionally a ServiceMonitor and a NetworkPolicy. The project README ("Kubernetes: the operator
and the Helm chart") explains what each part does.

## Installing

Build and push the image (from the repository root), then point the chart at it:

```sh
docker build -f helm/Dockerfile -t registry.example.com/ml/hybrid-placement:0.1.0 .
docker push registry.example.com/ml/hybrid-placement:0.1.0
```

Give it an external PostgreSQL through a Secret holding the SQLAlchemy URL under `url`:

```sh
kubectl create namespace placement
kubectl -n placement create secret generic placement-db \\
  --from-literal=url='postgresql://placement:PASSWORD@postgres.db:5432/placement'
helm install placement helm/placement -n placement \\
  --set image.repository=registry.example.com/ml/hybrid-placement --set image.tag=0.1.0 \\
  --set database.existingSecret=placement-db
kubectl wait --for=condition=Ready workload/NAME   # once a Workload is applied
```

Without `database.existingSecret` each Deployment runs one pod on SQLite in an emptyDir: a
demo that loses its data on restart.

## Values

Generated from the `# --` comments in values.yaml by `python helm/placement/gen_readme.py`;
edit those, not this table. `values.schema.json` checks every value at install.

| Key | Type | Default | Description |
|-----|------|---------|-------------|
"""


class UndocumentedValue(ValueError):
    """A value in values.yaml without a `# --` comment."""


@dataclass(frozen=True)
class Value:
    key: str  # dotted path
    type: str
    default: Any
    description: str


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null"


def _lookup(tree: Any, path: list[str]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def parse(text: str) -> list[Value]:
    """Every documented value of a values.yaml text, in file order."""
    tree = yaml.safe_load(text) or {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing maps
    documented: tuple[str, ...] | None = None  # the documented key we are inside of
    pending: list[str] | None = None
    out: list[Value] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            pending = None
            continue
        if stripped.startswith(MARK):
            pending = [stripped[len(MARK):].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped.lstrip("#").strip())
            continue
        match = KEY.match(line)
        if match is None:  # a list item or a continued flow value
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [match["key"]]
        stack.append((indent, match["key"]))
        if documented is not None and tuple(path[:len(documented)]) == documented:
            pending = None
            continue
        documented = None
        value = _lookup(tree, path)
        if pending is not None:
            out.append(Value(".".join(path), _type(value), value, " ".join(pending)))
            documented, pending = tuple(path), None
        elif not (isinstance(value, dict) and value):
            raise UndocumentedValue(f"line {number}: {'.'.join(path)} has no `{MARK}` "
                                    "comment; say what it does on the line above it")
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(values_text: str | None = None, chart_text: str | None = None) -> str:
    """The README for the chart's values.yaml and Chart.yaml (or the texts given)."""
    values_text = (CHART / "values.yaml").read_text() if values_text is None else values_text
    chart_text = (CHART / "Chart.yaml").read_text() if chart_text is None else chart_text
    chart = yaml.safe_load(chart_text)
    rows = [f"| `{v.key}` | {v.type} | `{_cell(json.dumps(v.default))}` | "
            f"{_cell(v.description)} |\n" for v in parse(values_text)]
    return INTRO.format(description=chart.get("description", "")) + "".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--check", action="store_true",
                      help="exit 1 when README.md differs from what would be written")
    ns = args.parse_args(argv)
    try:
        text = render()
    except UndocumentedValue as exc:
        sys.stderr.write(f"values.yaml: {exc}\n")
        return 2
    readme = CHART / "README.md"
    if ns.check:
        if not readme.exists() or readme.read_text() != text:
            sys.stderr.write(f"{readme} is out of date; run python "
                             "helm/placement/gen_readme.py\n")
            return 1
        return 0
    readme.write_text(text)
    sys.stdout.write(f"wrote {readme}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
