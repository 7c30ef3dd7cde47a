"""One-shot decisions (CLI, tests, simulator): an engine from a bundle, no store."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from placement.engine import Engine
from placement.errors import ConfigError, Issue
from placement.model import Decision, Reservation, Workload
from placement.policy.loader import Bundle


def engine_for(bundle: Bundle, reservations: list[Reservation] | None = None) -> Engine:
    """An engine over the bundle's inventory and policy."""
    return Engine(bundle.inventory, bundle.policy, bundle.policy_version, reservations or [])


def decide_all(bundle: Bundle, workloads: list[Workload],
               reservations: list[Reservation] | None = None) -> list[Decision]:
    """Decide each workload independently against the same snapshot."""
    engine = engine_for(bundle, reservations)
    return [engine.place(w) for w in workloads]


def load_reservations(path: Path) -> list[Reservation]:
    """Read a YAML list of reservations; errors name the entry and field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        return TypeAdapter(list[Reservation]).validate_python(data)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([Issue(str(path), 0, "", f"cannot read reservations ({exc})",
                                 "pass a readable YAML list")]) from exc
    except ValidationError as exc:
        raise ConfigError([
            Issue(str(path), 0, ".".join(str(p) for p in e["loc"]), e["msg"],
                  "give site, gpu_type, count and optionally remaining_hours")
            for e in exc.errors()
        ]) from exc
