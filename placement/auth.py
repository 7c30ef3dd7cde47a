"""API tokens: random bearer secrets stored as SHA-256 hashes, with a role and a team."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from placement.errors import FieldProblem, ForbiddenError, InvalidRequestError, UnauthorizedError
from placement.store.tables import ApiTokenRow

Role = Literal["admin", "member"]
PREFIX = "plc_"


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
    if role == "member" and not team:
        raise InvalidRequestError([FieldProblem(("team",), "a member token needs a team",
                                                "pass --team TEAM")])
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiTokenRow(token_hash=hash_token(token), role=role, team=team,
                            description=description))
    return token


def ensure_token(session: Session, *, token: str, role: Role,
                 description: str = "bootstrap") -> bool:
    """Store a token given from outside (a Kubernetes Secret) unless it is stored already;
    True when it was added. It must be long enough to be a secret."""
    if len(token) < 32:
        raise InvalidRequestError([FieldProblem(("admin_token",), "a bootstrap token needs at "
                                                "least 32 characters", "generate one with "
                                                "`openssl rand -base64 32`")])
    digest = hash_token(token)
    if session.scalar(select(ApiTokenRow.id).where(ApiTokenRow.token_hash == digest)):
        return False
    session.add(ApiTokenRow(token_hash=digest, role=role, team=None, description=description))
    return True


def authenticate(session: Session, authorization: str | None) -> Principal:
    """The caller behind an `Authorization: Bearer ...` header; UnauthorizedError otherwise."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise UnauthorizedError("missing bearer token; send 'Authorization: Bearer <token>' "
                                "(create one with `placement token create`)")
    token = authorization[7:].strip()
    row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(token),
                                                   ApiTokenRow.revoked_at.is_(None)))
    if row is None:
        raise UnauthorizedError("unknown or revoked token; create a new one with "
                                "`placement token create`")
    return Principal(role="admin" if row.role == "admin" else "member", team=row.team)
