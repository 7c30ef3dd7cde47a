"""The guarded capacity update, written once: the ORM path and the pipelined PostgreSQL text
take GPUs only while they are free, and giving them back restores the row."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from placement.store.capacity import (
    TAKE_PG,
    CapacityConflict,
    check_taken,
    give_back,
    take_gpus,
    take_params,
)
from placement.store.db import open_database
from placement.store.migrate import upgrade
from placement.store.tables import CapacityRow


@pytest.mark.parametrize(("takes", "reserved", "conflicts"), [
    ([4], 4, 0), ([4, 4], 8, 0), ([4, 4, 1], 8, 1), ([9], 0, 1), ([8, 0], 8, 0),
], ids=["some", "all of it", "one GPU past it", "more than there is", "nothing more"])
def test_take_reserves_only_what_is_free(db_url: str, takes: list[int], reserved: int,
                                         conflicts: int) -> None:
    db = open_database(db_url)
    upgrade(db)
    with db.write() as s:
        s.add(CapacityRow(site="dc", gpu_type="A100", total=8, reserved=0))
    lost = 0
    for n in takes:
        try:
            with db.write() as s:
                take_gpus(s, site="dc", gpu="A100", n=n)
        except CapacityConflict:
            lost += 1
    with db.read() as s:
        assert s.scalar(select(CapacityRow.reserved)) == reserved
    assert lost == conflicts
    with db.write() as s:
        give_back(s, site="dc", gpu="A100", n=reserved)
    with db.read() as s:
        assert s.scalar(select(CapacityRow.reserved)) == 0
    if db_url.startswith("postgresql"):  # the pipelined batch runs the same statement's text
        with db.write() as s:
            raw = s.connection().connection.driver_connection
            cur = raw.cursor()  # type: ignore[union-attr]
            cur.execute(TAKE_PG, take_params(site="dc", gpu="A100", n=8))
            check_taken(cur.rowcount, site="dc", gpu="A100")
            cur.execute(TAKE_PG, take_params(site="dc", gpu="A100", n=1))
            with pytest.raises(CapacityConflict):
                check_taken(cur.rowcount, site="dc", gpu="A100")
    db.dispose()
