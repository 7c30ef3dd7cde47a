"""API tokens (admin only): list, create (the secret is in the response once), revoke."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import PrincipalDep, RuntimeDep
from api.errors import AUTH, WRITE, responses
from api.schemas import Timestamp
from placement.control.auth import create_token_row, revoke_token
from placement.model.common import NAME_PATTERN, Text
from placement.store import tokens as store
from placement.store.db import as_utc
from placement.store.tokens import TokenView

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


class TokenPublic(BaseModel):
    """A stored token, never its secret: only its hash is stored."""

    id: uuid.UUID
    prefix: str | None = Field(description="The token's first characters, to tell it apart; "
                               "null for tokens stored before prefixes were kept.")
    role: Literal["admin", "member"]
    team: str | None
    description: str
    created_at: Timestamp
    revoked_at: Timestamp | None


class TokenCreated(TokenPublic):
    token: str = Field(description="The bearer secret, shown only in this response: keep it.")


class TokenCreate(BaseModel):
    # A member token (the default role) needs a team: said in the schema too.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "if": {"properties": {"role": {"const": "member"}}},
        "then": {"required": ["team"], "properties": {"team": {"type": "string"}}}})

    role: Literal["admin", "member"] = "member"
    team: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)] | None = Field(
        default=None, description="The team of a member token (required for members).")
    description: Annotated[Text, Field(max_length=500)] = ""


REVOKE = {"Revoke": {"operationId": "tokens-revoke",
                     "parameters": {"token_id": "$response.body#/id"}}}


def _public(row: TokenView) -> TokenPublic:
    created = as_utc(row.created_at)
    assert created is not None
    return TokenPublic(id=row.id, prefix=row.prefix,
                       role="admin" if row.role == "admin" else "member", team=row.team,
                       description=row.description, created_at=created,
                       revoked_at=as_utc(row.revoked_at))


@router.get("", response_model=list[TokenPublic], operation_id="tokens-list",
            responses=responses(*AUTH, 403))
def list_all(rt: RuntimeDep, who: PrincipalDep) -> list[TokenPublic]:
    who.require_admin()
    with rt.db.read() as s:
        return [_public(r) for r in store.list_tokens(s)]


@router.post("", response_model=TokenCreated, status_code=201, operation_id="tokens-create",
             responses={201: {"description": "Created; `token` is the secret, shown once.",
                              "links": REVOKE}, **responses(*WRITE)})
def create(body: TokenCreate, rt: RuntimeDep, who: PrincipalDep) -> TokenCreated:
    who.require_admin()
    with rt.db.write() as s:
        row, secret = create_token_row(s, role=body.role, team=body.team,
                                       description=body.description)
        out = _public(row)
    return TokenCreated(**out.model_dump(), token=secret)


@router.delete("/{token_id}", status_code=204, response_class=Response,
               operation_id="tokens-revoke", responses=responses(*AUTH, 403, 404, 422))
def revoke(token_id: uuid.UUID, request: Request, rt: RuntimeDep,
           who: PrincipalDep) -> Response:
    """Revoke a token (again: 204 too) and end its dashboard sessions. This process refuses
    it at once; other replicas within their token cache's lifetime (10 s)."""
    who.require_admin()
    with rt.db.write() as s:
        revoke_token(s, token_id)
    # The cache is keyed by the secret's hash, which this request does not know: drop it all.
    request.app.state.token_cache.clear()
    return Response(status_code=204)
