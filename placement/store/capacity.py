"""GPU capacity rows: the guarded update that reserves GPUs, and giving them back, written once
for every caller (one submission, a batch pipelined on PostgreSQL, a job decided again)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from placement.errors import PlacementError
from placement.store.tables import CapacityRow


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
