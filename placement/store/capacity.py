"""GPU capacity rows: the guarded update that reserves GPUs, and giving them back, written once
for every caller (one submission, a batch pipelined on PostgreSQL, a job decided again)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, tuple_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from placement.errors import PlacementError
from placement.store.tables import CapacityRow, ReservationRow


class CapacityConflict(PlacementError):
    """Another transaction reserved the GPUs this decision counted on; decide again."""


# Reserve n GPUs only if they are free now: the one guard against over-commit.
TAKE = (update(CapacityRow)
        .where(CapacityRow.site == bindparam("b_site"),
               CapacityRow.gpu_type == bindparam("b_gpu"),
               CapacityRow.reserved + bindparam("b_n") <= CapacityRow.total)
        .values(reserved=CapacityRow.reserved + bindparam("b_n")))
# The same statement as psycopg text (named %(...)s parameters), for pipelined batches.
TAKE_PG = str(TAKE.compile(dialect=postgresql.psycopg.dialect()))  # type: ignore[no-untyped-call]
GIVE_BACK = (update(CapacityRow)
             .where(CapacityRow.site == bindparam("b_site"),
                    CapacityRow.gpu_type == bindparam("b_gpu"))
             .values(reserved=CapacityRow.reserved - bindparam("b_n")))


def take_params(*, site: str, gpu: str, n: int) -> dict[str, Any]:
    """The parameters of TAKE, TAKE_PG and GIVE_BACK (bind names differ from the columns'
    names, as an UPDATE needs)."""
    return {"b_site": site, "b_gpu": gpu, "b_n": n}


def take_gpus(s: Session, *, site: str, gpu: str, n: int) -> None:
    """Reserve n GPUs of `gpu` at `site` if they are free now; CapacityConflict otherwise."""
    done = s.execute(TAKE, take_params(site=site, gpu=gpu, n=n))
    check_taken(done.rowcount, site=site, gpu=gpu)  # type: ignore[attr-defined]


def check_taken(rowcount: int, *, site: str, gpu: str) -> None:
    """A guarded update that changed no row lost the race: decide again."""
    if rowcount != 1:
        raise CapacityConflict(f"{site} {gpu} changed")


def give_back(s: Session, *, site: str, gpu: str, n: int) -> None:
    """Return n reserved GPUs (their reservation is marked released first)."""
    s.execute(GIVE_BACK, take_params(site=site, gpu=gpu, n=n))


def reserved_counts(s: Session) -> list[tuple[str, str, int]]:
    """(site, GPU type, reserved) of every capacity row."""
    rows = s.execute(select(CapacityRow.site, CapacityRow.gpu_type, CapacityRow.reserved))
    return [(site, gpu, n) for site, gpu, n in rows]


def active_holds(s: Session, *, pairs: list[tuple[str, str]]
                 ) -> list[tuple[str, str, int, datetime | None]]:
    """(site, GPU type, count, expected end) of the active reservations on the given pairs."""
    rows = s.execute(select(ReservationRow.site, ReservationRow.gpu_type, ReservationRow.count,
                            ReservationRow.expected_end_at)
                     .where(ReservationRow.released_at.is_(None),
                            tuple_(ReservationRow.site, ReservationRow.gpu_type).in_(pairs)))
    return [(site, gpu, count, end) for site, gpu, count, end in rows]
