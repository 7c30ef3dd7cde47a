"""Sites, datasets and client locations: list and get (any caller), write (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import PrincipalDep, RuntimeDep
from api.errors import AUTH, WRITE, json_loc, responses
from api.schemas import InventoryPublic
from placement.errors import FieldProblem, InvalidRequestError
from placement.model.common import NAME_PATTERN
from placement.store import inventory as inv

NameParam = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63,
                                description="The object's DNS-1123 name.")]


def _public(row: inv.DocView) -> InventoryPublic:
    return InventoryPublic(id=row.id, name=row.name, document=row.document,
                           created_at=row.created_at, updated_at=row.updated_at)


def _document(kind: inv.Kind, document: dict[str, Any]) -> dict[str, Any]:
    """The body as the store reads it, checked here first so that each error names its field
    as it was sent; a `kind` other than the resource's is an error, not silently replaced."""
    model = inv.MODELS[kind]
    expected = model.model_fields["kind"].default
    if document.get("kind", expected) != expected:
        raise InvalidRequestError([FieldProblem(
            ("kind",), f"kind {document['kind']!r} is not {expected!r}",
            f"send kind {expected!r} or leave it out")])
    try:
        model.model_validate({**document, "kind": expected})
    except ValidationError as exc:
        raise RequestValidationError([
            {**e, "loc": ("body", *json_loc(document, e["loc"]))}
            for e in exc.errors(include_url=False)]) from None
    return document


def make_router(kind: inv.Kind, path: str, example: dict[str, Any]) -> APIRouter:
    """The five routes of one inventory resource."""
    router = APIRouter(prefix=f"/v1/{path}", tags=[path])
    doc = Body(examples=[example])
    model = inv.MODELS[kind].__name__
    body = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model}"}}}}}
    by_name = {"name": "$response.body#/name"}
    links = {"Get": {"operationId": f"{path}-get", "parameters": by_name},
             "Replace": {"operationId": f"{path}-replace", "parameters": by_name},
             "Delete": {"operationId": f"{path}-delete", "parameters": by_name}}

    @router.get("", response_model=list[InventoryPublic], name=f"list_{kind}s",
                operation_id=f"{path}-list", responses=responses(*AUTH))
    def list_all(rt: RuntimeDep, _: PrincipalDep) -> list[InventoryPublic]:
        with rt.db.read() as s:
            return [_public(r) for r in inv.list_docs(s, kind=kind)]

    @router.get("/{name}", response_model=InventoryPublic, name=f"get_{kind}",
                operation_id=f"{path}-get", responses=responses(*AUTH, 404, 422))
    def get_one(name: NameParam, rt: RuntimeDep, _: PrincipalDep) -> InventoryPublic:
        with rt.db.read() as s:
            return _public(inv.get_doc(s, kind=kind, name=name))

    @router.post("", response_model=InventoryPublic, status_code=201, name=f"create_{kind}",
                 operation_id=f"{path}-create", openapi_extra=body,
                 responses={201: {"description": "Created.", "links": links},
                            **responses(*WRITE, 409)})
    def create(rt: RuntimeDep, who: PrincipalDep,
               document: dict[str, Any] = doc) -> InventoryPublic:
        who.require_admin()
        with rt.db.write() as s:
            out = _public(inv.create_doc(s, kind=kind, document=_document(kind, document)))
        rt.invalidate_capacity()  # this process decides on the new inventory at once
        return out

    @router.put("/{name}", response_model=InventoryPublic, name=f"replace_{kind}",
                operation_id=f"{path}-replace", openapi_extra=body,
                responses=responses(*WRITE, 404, 409))
    def replace(name: NameParam, rt: RuntimeDep, who: PrincipalDep,
                document: dict[str, Any] = doc) -> InventoryPublic:
        who.require_admin()
        with rt.db.write() as s:
            out = _public(inv.replace_doc(s, kind=kind, name=name,
                                          document=_document(kind, document)))
        rt.invalidate_capacity()
        return out

    @router.delete("/{name}", status_code=204, response_class=Response, name=f"delete_{kind}",
                   operation_id=f"{path}-delete", responses=responses(*AUTH, 403, 404, 409, 422))
    def remove(name: NameParam, rt: RuntimeDep, who: PrincipalDep) -> Response:
        who.require_admin()
        with rt.db.write() as s:
            inv.delete_doc(s, kind=kind, name=name)
        rt.invalidate_capacity()
        return Response(status_code=204)

    return router


SITE_EXAMPLE = {"metadata": {"name": "dc-berlin", "labels": {"residency": "eu"}},
                "spec": {"type": "onprem", "location": {"lat": 52.52, "lon": 13.40},
                         "kube_context": "dc-berlin", "wan_gbps": 10, "egress_usd_per_gb": 0,
                         "gpus": [{"type": "L4", "count": 8, "usd_per_gpu_hour": 0.7489}]}}
DATASET_EXAMPLE = {"metadata": {"name": "manuals"},
                   "spec": {"size_gb": 20, "replicas": ["dc-frankfurt"],
                            "classification": "internal"}}
CLIENT_EXAMPLE = {"metadata": {"name": "berlin-office"},
                  "spec": {"location": {"lat": 52.52, "lon": 13.40}}}

sites = make_router("site", "sites", SITE_EXAMPLE)
datasets = make_router("dataset", "datasets", DATASET_EXAMPLE)
client_locations = make_router("client_location", "client-locations", CLIENT_EXAMPLE)
