"""Stored policy bundles: one active version at a time, kept with its content."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from placement.store.tables import PolicyBundleRow


def activate(s: Session, *, version: str, source: str, content: dict[str, Any]) -> bool:
    """Make `version` the active policy (storing its content when new); True when the active
    version changed."""
    active = s.scalar(select(PolicyBundleRow).where(PolicyBundleRow.active.is_(True)))
    if active is not None and active.version == version:
        return False
    s.execute(update(PolicyBundleRow).values(active=False))
    row = s.scalar(select(PolicyBundleRow).where(PolicyBundleRow.version == version))
    if row is None:
        s.add(PolicyBundleRow(version=version, active=True, source=source, content=content))
    else:
        row.active = True
    return True


def active(s: Session) -> tuple[dict[str, Any], str] | None:
    """The active policy's stored content and version, if any."""
    row = s.scalar(select(PolicyBundleRow).where(PolicyBundleRow.active.is_(True)))
    return None if row is None else (row.content, row.version)
