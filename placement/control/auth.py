"""API tokens: random bearer secrets stored as SHA-256 hashes, with a role and a team; and
dashboard sessions opened with one (random ids, stored hashed, ended by logout, expiry or the
token's revocation)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy.orm import Session

from placement.errors import (
    FieldProblem,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    UnauthorizedError,
)
from placement.store import tokens as store
from placement.store.db import utcnow
from placement.store.tokens import TokenView

Role = Literal["admin", "member"]
PREFIX = "plc_"
SHOWN = 10  # characters of a token kept in the clear to tell tokens apart ("plc_" and 6 more)
SESSION_SECONDS = 8 * 3600  # a dashboard session ends this long after login at the latest


@dataclass(frozen=True)
class Principal:
    """Who is calling: admins see everything, members only their team."""

    role: Role
    team: str | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require_admin(self) -> None:
        if not self.is_admin:
            raise ForbiddenError("this needs an admin token; ask an admin or use one")

    def require_team(self, team: str) -> None:
        if not self.is_admin and team != self.team:
            raise ForbiddenError(f"a member of team {self.team!r} cannot act on team {team!r}'s "
                                 "workloads; use a token of that team")


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, role: Role, team: str | None,
                 description: str = "") -> str:
    """Store a new token's hash and return the token (shown once, never stored)."""
    return create_token_row(session, role=role, team=team, description=description)[1]


def create_token_row(session: Session, *, role: Role, team: str | None,
                     description: str = "") -> tuple[TokenView, str]:
    """create_token, with the stored token (flushed, so its id is set)."""
    if role == "member" and not team:
        raise InvalidRequestError([FieldProblem(("team",), "a member token needs a team",
                                                "pass --team TEAM")])
    token = PREFIX + secrets.token_urlsafe(32)
    row = store.insert_token(session, token_hash=hash_token(token), role=role, team=team,
                             description=description, prefix=token[:SHOWN])
    return row, token


def ensure_token(session: Session, *, token: str, role: Role,
                 description: str = "bootstrap") -> bool:
    """Store a token given from outside (a Kubernetes Secret) unless it is stored already;
    True when it was added. It must be long enough to be a secret."""
    if len(token) < 32:
        raise InvalidRequestError([FieldProblem(("admin_token",), "a bootstrap token needs at "
                                                "least 32 characters", "generate one with "
                                                "`openssl rand -base64 32`")])
    digest = hash_token(token)
    if store.token_exists(session, token_hash=digest):
        return False
    store.insert_token(session, token_hash=digest, role=role, team=None,
                       description=description,
                       prefix=token[:SHOWN] if token.startswith(PREFIX) else None)
    return True


def authenticate(session: Session, authorization: str | None) -> Principal:
    """The caller behind an `Authorization: Bearer ...` header; UnauthorizedError otherwise."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise UnauthorizedError("missing bearer token; send 'Authorization: Bearer <token>' "
                                "(create one with `placement token create`)")
    return _principal_of(_active(session, authorization[7:].strip()))


def _active(session: Session, token: str) -> TokenView:
    row = store.active_token(session, token_hash=hash_token(token))
    if row is None:
        raise UnauthorizedError("unknown or revoked token; create a new one with "
                                "`placement token create`")
    return row


def _principal_of(row: TokenView) -> Principal:
    return Principal(role="admin" if row.role == "admin" else "member", team=row.team)


def list_tokens(session: Session) -> list[TokenView]:
    """Every stored token, oldest first (revoked ones too)."""
    return store.list_tokens(session)


def revoke_token(session: Session, token_id: uuid.UUID) -> TokenView:
    """Revoke a token (again is a no-op) and end its dashboard sessions; NotFoundError when no
    token has this id. Other processes stop accepting it when their token cache entry
    expires (api.deps.TOKEN_CACHE_SECONDS)."""
    row = store.revoke(session, token_id=token_id, now=utcnow())
    if row is None:
        raise NotFoundError("token", str(token_id))
    return row


def start_session(session: Session, token: str,
                  seconds: float = SESSION_SECONDS) -> str:
    """Open a dashboard session for a valid token; returns its id (kept only hashed here).
    UnauthorizedError for an unknown or revoked token. Expired sessions are swept."""
    row = _active(session, token)
    now = utcnow()
    store.sweep_sessions(session, now=now)
    sid = secrets.token_urlsafe(32)
    store.insert_session(session, id_hash=hash_token(sid), token_id=row.id, created_at=now,
                         expires_at=now + timedelta(seconds=seconds))
    return sid


def session_principal(session: Session, sid: str) -> Principal | None:
    """The caller behind a dashboard session id: None when it is unknown, ended, expired or
    its token was revoked."""
    row = store.session_token(session, id_hash=hash_token(sid), now=utcnow())
    return None if row is None else _principal_of(row)


def end_session(session: Session, sid: str) -> None:
    """Log out: the session's row is deleted (an unknown id is a no-op)."""
    store.delete_session(session, id_hash=hash_token(sid))
