"""Inventory in the store: sites, datasets and client locations, with capacity rows kept in step."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from placement.errors import ConflictError, FieldProblem, InvalidRequestError, NotFoundError
from placement.model import ClientLocation, Dataset, Inventory, Site
from placement.model.inventory import CloudSiteSpec
from placement.store.tables import (
    CapacityRow,
    ClientLocationRow,
    DatasetRow,
    InventoryDoc,
    InventoryVersion,
    ReservationRow,
    SiteRow,
)

Kind = Literal["site", "dataset", "client_location"]
log = logging.getLogger("placement.store.inventory")
ROWS: dict[str, type[SiteRow] | type[DatasetRow] | type[ClientLocationRow]] = {
    "site": SiteRow, "dataset": DatasetRow, "client_location": ClientLocationRow}
MODELS: dict[str, type[BaseModel]] = {
    "site": Site, "dataset": Dataset, "client_location": ClientLocation}


@dataclass(frozen=True)
class DocView:
    """A stored inventory document (site, dataset or client location)."""

    id: uuid.UUID
    name: str
    document: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CapacityView:
    """GPUs of one type at one site, and how many are reserved."""

    site: str
    gpu_type: str
    total: int
    reserved: int


def _view(row: InventoryDoc) -> DocView:
    return DocView(id=row.id, name=row.name, document=row.document,
                   created_at=row.created_at, updated_at=row.updated_at)


def capacity(session: Session) -> list[CapacityView]:
    """Every (site, GPU type) capacity row, by site and GPU type."""
    rows = session.scalars(select(CapacityRow).order_by(CapacityRow.site, CapacityRow.gpu_type))
    return [CapacityView(site=r.site, gpu_type=r.gpu_type, total=r.total, reserved=r.reserved)
            for r in rows]


def inventory_version(session: Session) -> int:
    """Current inventory version (bumped on every change)."""
    return int(session.scalar(select(InventoryVersion.version).where(InventoryVersion.id == 1))
               or 0)


def _bump(session: Session) -> None:
    session.execute(update(InventoryVersion).where(InventoryVersion.id == 1)
                    .values(version=InventoryVersion.version + 1))


def load_inventory(session: Session, skipped: list[str] | None = None) -> Inventory:
    """Every inventory document as one validated Inventory.

    A stored row that no longer validates (written by an older version, or by hand) is
    left out, logged and named in `skipped`: the others keep deciding."""
    def rows(kind: Kind) -> list[Any]:
        model, table = MODELS[kind], ROWS[kind]
        good = []
        for r in session.scalars(select(table).order_by(table.name)):
            assert isinstance(r, InventoryDoc)
            try:
                good.append(model.model_validate(r.document))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                problem = (f"{kind.replace('_', ' ')} {r.name!r} in the store does not load "
                           f"({where}: {first['msg']}); it is left out of decisions until it "
                           "is replaced (PUT) or deleted")
                log.error("%s", problem)
                if skipped is not None:
                    skipped.append(problem)
        return good

    return Inventory(sites=rows("site"), datasets=rows("dataset"),
                     client_locations=rows("client_location"))


def list_docs(session: Session, *, kind: Kind, limit: int = 1000) -> list[DocView]:
    """The documents of one kind, by name."""
    row = ROWS[kind]
    rows = session.scalars(select(row).order_by(row.name).limit(limit))
    return [_view(r) for r in rows if isinstance(r, InventoryDoc)]


def _doc_row(session: Session, *, kind: Kind, name: str) -> InventoryDoc:
    found = session.scalar(select(ROWS[kind]).where(ROWS[kind].name == name))
    if not isinstance(found, InventoryDoc):
        raise NotFoundError(kind.replace("_", " "), name)
    return found


def get_doc(session: Session, *, kind: Kind, name: str) -> DocView:
    """The document called `name`; NotFoundError when there is none."""
    return _view(_doc_row(session, kind=kind, name=name))


def _validate(kind: Kind, document: dict[str, Any]) -> Any:
    data = {**document, "kind": MODELS[kind].model_fields["kind"].default}
    try:
        return MODELS[kind].model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError([
            FieldProblem(tuple(p for p in e["loc"] if isinstance(p, str | int)), e["msg"],
                         "correct this field") for e in exc.errors()]) from exc


def _site_names(session: Session) -> set[str]:
    return set(session.scalars(select(SiteRow.name)))


def _check_refs(session: Session, obj: Any) -> None:
    sites = _site_names(session)
    problems: list[FieldProblem] = []
    fix = f"use an existing site ({', '.join(sorted(sites)[:10]) or 'none yet'})"
    if isinstance(obj, Site):
        sites.add(obj.name)
        problems += [FieldProblem(("spec", "links", i, "to"), f"unknown site {link.to!r}", fix)
                     for i, link in enumerate(obj.spec.links) if link.to not in sites]
    elif isinstance(obj, Dataset):
        problems += [FieldProblem(("spec", "replicas", i), f"unknown site {r!r}", fix)
                     for i, r in enumerate(obj.spec.replicas) if r not in sites]
    elif isinstance(obj, ClientLocation):
        problems += [FieldProblem(("spec", "rtt_ms", s), f"unknown site {s!r}", fix)
                     for s in obj.spec.rtt_ms if s not in sites]
    if problems:
        raise InvalidRequestError(problems)


def _sync_capacity(session: Session, site: Site) -> None:
    spec = site.spec
    wanted = ({g.type: g.quota_gpus for g in spec.gpus} if isinstance(spec, CloudSiteSpec)
              else {g.type: g.count for g in spec.gpus})
    rows = {r.gpu_type: r for r in session.scalars(
        select(CapacityRow).where(CapacityRow.site == site.name).with_for_update())}
    for gpu, row in rows.items():
        if gpu not in wanted and row.reserved > 0:
            raise ConflictError(f"site {site.name} has {row.reserved} {gpu} GPUs reserved; "
                                "release those workloads before removing the GPU type")
        if gpu in wanted and wanted[gpu] < row.reserved:
            raise ConflictError(f"site {site.name} has {row.reserved} {gpu} GPUs reserved; "
                                f"capacity cannot drop to {wanted[gpu]} until they are released")
    for gpu, row in rows.items():
        if gpu not in wanted:
            session.delete(row)
        else:
            row.total = wanted[gpu]
    for gpu, total in wanted.items():
        if gpu not in rows:
            session.add(CapacityRow(site=site.name, gpu_type=gpu, total=total, reserved=0))


def create_doc(session: Session, *, kind: Kind, document: dict[str, Any]) -> DocView:
    """Validate and insert (flushed, so its id and times are set); 409 when the name exists."""
    obj = _validate(kind, document)
    if session.scalar(select(ROWS[kind].id).where(ROWS[kind].name == obj.name)) is not None:
        raise ConflictError(f"{kind.replace('_', ' ')} {obj.name!r} exists; use PUT to "
                            "replace it")
    _check_refs(session, obj)
    row = ROWS[kind](name=obj.name, document=obj.model_dump(mode="json"))
    if isinstance(obj, Site):
        row.site_type = obj.spec.type  # type: ignore[union-attr]
        _sync_capacity(session, obj)
    session.add(row)
    _bump(session)
    session.flush()
    return _view(row)


def replace_doc(session: Session, *, kind: Kind, name: str,
                document: dict[str, Any]) -> DocView:
    """Validate and replace the document called `name` (the body must keep the name); flushed,
    so its update time is set."""
    row = _doc_row(session, kind=kind, name=name)
    obj = _validate(kind, document)
    if obj.name != name:
        raise InvalidRequestError([FieldProblem(("metadata", "name"),
                                                f"name {obj.name!r} differs from {name!r}",
                                                "renaming is not supported; create a new one")])
    _check_refs(session, obj)
    if isinstance(obj, Site) and isinstance(row, SiteRow):
        _sync_capacity(session, obj)
        row.site_type = obj.spec.type
    row.document = obj.model_dump(mode="json")
    _bump(session)
    session.flush()
    return _view(row)


def _references_to_site(session: Session, name: str) -> list[str]:
    refs = []
    for ds in session.scalars(select(DatasetRow)):
        if name in ds.document["spec"]["replicas"]:
            refs.append(f"dataset {ds.name}")
    for site in session.scalars(select(SiteRow).where(SiteRow.name != name)):
        if any(link["to"] == name for link in site.document["spec"].get("links", [])):
            refs.append(f"site {site.name} (link)")
    for cl in session.scalars(select(ClientLocationRow)):
        if name in cl.document["spec"].get("rtt_ms", {}):
            refs.append(f"client location {cl.name}")
    return refs


def delete_doc(session: Session, *, kind: Kind, name: str) -> None:
    """Delete; a site with reservations or references cannot go."""
    row = _doc_row(session, kind=kind, name=name)
    if kind == "site":
        held = session.scalar(select(func.count()).select_from(ReservationRow).where(
            ReservationRow.site == name, ReservationRow.released_at.is_(None)))
        if held:
            raise ConflictError(f"site {name} holds {held} active reservation(s); release "
                                "those workloads first")
        refs = _references_to_site(session, name)
        if refs:
            raise ConflictError(f"site {name} is referenced by {', '.join(refs)}; update "
                                "those first")
        session.execute(delete(CapacityRow).where(CapacityRow.site == name))
    session.delete(row)
    _bump(session)


def seed(session: Session, inventory: Inventory) -> int:
    """Import a bundle's inventory into an empty store; returns documents written."""
    if session.scalar(select(func.count()).select_from(SiteRow)):
        return 0
    n = 0
    for site in inventory.sites:
        session.add(SiteRow(name=site.name, site_type=site.spec.type,
                            document=site.model_dump(mode="json")))
        _sync_capacity(session, site)
        n += 1
    for ds in inventory.datasets:
        session.add(DatasetRow(name=ds.name, document=ds.model_dump(mode="json")))
        n += 1
    for cl in inventory.client_locations:
        session.add(ClientLocationRow(name=cl.name, document=cl.model_dump(mode="json")))
        n += 1
    _bump(session)
    return n
