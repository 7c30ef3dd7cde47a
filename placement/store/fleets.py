"""Fleets in the store: the served fleets an autoscaling pass reads. A fleet's new size is
recorded by transitions.add_decision(replace_holds=True): the one write path for a decision."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from placement.store.tables import DecisionRow, WorkloadRow


@dataclass(frozen=True)
class ServedFleet:
    """A fleet being served: its workload, document and the decision that sized it."""

    workload_id: uuid.UUID
    decision_id: uuid.UUID
    document: dict[str, Any]
    fleet: dict[str, Any]


def served_fleets(s: Session, *, kinds: tuple[str, ...], phases: tuple[str, ...]
                  ) -> list[ServedFleet]:
    """Service workloads in `phases` whose current decision is a fleet."""
    out = []
    for wid, did, document, explanation in s.execute(
            select(WorkloadRow.id, WorkloadRow.decision_id, WorkloadRow.document,
                   DecisionRow.explanation)
            .join(DecisionRow, DecisionRow.id == WorkloadRow.decision_id)
            .where(WorkloadRow.kind.in_(kinds), WorkloadRow.phase.in_(phases),
                   WorkloadRow.action.in_(("place", "burst")))):
        fleet = (explanation or {}).get("fleet")
        if fleet and did is not None:
            out.append(ServedFleet(wid, did, document, fleet))
    return out
