"""API tokens and dashboard sessions in the store: rows in, plain values out. Hashing and
principals are placement.control.auth's; this module only reads and writes by hash."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from placement.store.tables import ApiTokenRow, UiSessionRow


@dataclass(frozen=True)
class TokenView:
    """A stored token, never its secret (only its hash is stored, and not shown here)."""

    id: uuid.UUID
    prefix: str | None
    role: str
    team: str | None
    description: str
    created_at: datetime
    revoked_at: datetime | None


def _view(row: ApiTokenRow) -> TokenView:
    return TokenView(id=row.id, prefix=row.prefix, role=row.role, team=row.team,
                     description=row.description, created_at=row.created_at,
                     revoked_at=row.revoked_at)


def insert_token(s: Session, *, token_hash: str, role: str, team: str | None,
                 description: str, prefix: str | None) -> TokenView:
    """Store a token's hash (flushed, so its id and creation time are set)."""
    row = ApiTokenRow(token_hash=token_hash, role=role, team=team, description=description,
                      prefix=prefix)
    s.add(row)
    s.flush()
    return _view(row)


def token_exists(s: Session, *, token_hash: str) -> bool:
    """Whether a token with this hash is stored (revoked or not)."""
    return bool(s.scalar(select(ApiTokenRow.id).where(ApiTokenRow.token_hash == token_hash)))


def active_token(s: Session, *, token_hash: str) -> TokenView | None:
    """The unrevoked token with this hash, if any."""
    row = s.scalar(select(ApiTokenRow).where(ApiTokenRow.token_hash == token_hash,
                                             ApiTokenRow.revoked_at.is_(None)))
    return None if row is None else _view(row)


def list_tokens(s: Session) -> list[TokenView]:
    """Every stored token, oldest first (revoked ones too)."""
    return [_view(r) for r in s.scalars(select(ApiTokenRow).order_by(ApiTokenRow.created_at,
                                                                      ApiTokenRow.id))]


def revoke(s: Session, *, token_id: uuid.UUID, now: datetime) -> TokenView | None:
    """Mark the token revoked at `now` (kept when it was revoked before) and delete its
    dashboard sessions; None when no token has this id."""
    row = s.get(ApiTokenRow, token_id, with_for_update=True)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = now
    s.execute(delete(UiSessionRow).where(UiSessionRow.token_id == token_id))
    return _view(row)


def sweep_sessions(s: Session, *, now: datetime) -> None:
    """Delete the dashboard sessions expired by `now`."""
    s.execute(delete(UiSessionRow).where(UiSessionRow.expires_at <= now))


def insert_session(s: Session, *, id_hash: str, token_id: uuid.UUID, created_at: datetime,
                   expires_at: datetime) -> None:
    """Store a dashboard session (by its id's hash) bound to a token."""
    s.add(UiSessionRow(id_hash=id_hash, token_id=token_id, created_at=created_at,
                       expires_at=expires_at))


def session_token(s: Session, *, id_hash: str, now: datetime) -> TokenView | None:
    """The unrevoked token behind an unexpired dashboard session, if any."""
    row = s.scalar(
        select(ApiTokenRow).join(UiSessionRow, UiSessionRow.token_id == ApiTokenRow.id)
        .where(UiSessionRow.id_hash == id_hash, UiSessionRow.expires_at > now,
               ApiTokenRow.revoked_at.is_(None)))
    return None if row is None else _view(row)


def delete_session(s: Session, *, id_hash: str) -> None:
    """Delete a dashboard session (an unknown hash is a no-op)."""
    s.execute(delete(UiSessionRow).where(UiSessionRow.id_hash == id_hash))
