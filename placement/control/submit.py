"""Batched submissions: one thread per process decides a batch in order, stores it in one
transaction and takes each site's GPUs with one guarded update.

Under load this turns N transactions (and N waits on the same hot capacity row) into one,
while keeping every guarantee of the single path: decisions in a batch see the GPUs taken by
earlier ones, the guarded updates still refuse to over-commit (across processes too), and an
Idempotency-Key still returns the first result.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)

from placement.control.lifecycle import (
    MAX_ATTEMPTS,
    DecisionData,
    check_references,
    count_decision,
    decide,
    decision_rows,
)
from placement.control.runtime import Runtime
from placement.engine import Engine, Outcome
from placement.engine.compiled import CapacityState
from placement.errors import (
    ConflictError,
    PlacementError,
    StoreUnavailableError,
    UnprocessableError,
)
from placement.model import Workload
from placement.store.capacity import CapacityConflict
from placement.store.db import utcnow
from placement.store.spend import committed
from placement.store.submissions import by_keys, insert_new, stored_ids
from placement.store.transitions import gpus_wanted

log = logging.getLogger("placement.control.submit")
Row = dict[str, Any]
Result = tuple[Row, Row | None, bool]  # workload, its decision, created now


@dataclass
class Pending:
    """One submission waiting for its batch."""

    workload: Workload
    key: str | None
    future: Future[Result] = field(default_factory=Future)

    @property
    def ident(self) -> tuple[str, str] | None:
        return (self.workload.spec.team, self.key) if self.key is not None else None


class Batcher:
    """Collects submissions from request threads and places them in batches."""

    def __init__(self, rt: Runtime, max_batch: int = 64,
                 place: Callable[[Runtime, list[Pending]], None] | None = None) -> None:
        self.rt = rt
        self.max_batch = max_batch
        self.place = place or place_batch  # what a batch goes through (a bench swaps it)
        self.inbox: queue.Queue[Pending | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="placement-batcher", daemon=True)

    def start(self) -> Batcher:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.inbox.put(None)
        self.thread.join(timeout=30)

    def enqueue(self, workload: Workload, key: str | None) -> Future[Result]:
        """Queue a submission; the future resolves when its batch has committed."""
        pending = Pending(workload, key)
        self.inbox.put(pending)
        return pending.future

    def _run(self) -> None:
        while True:
            first = self.inbox.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.inbox.put(None)
                    break
                batch.append(item)
            self.rt.metrics.batch_size.observe(len(batch))
            try:
                self.place(self.rt, batch)
            except Exception as exc:  # never leave a request waiting forever
                log.exception("batch of %d failed", len(batch))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)


def _resolve_existing(rt: Runtime, batch: list[Pending]) -> list[Pending]:
    """Answer retries whose Idempotency-Key is already stored; fold duplicates in the batch."""
    keyed = [p.ident for p in batch if p.ident is not None]
    found: dict[tuple[str, str], tuple[Row, Row | None]] = {}
    if keyed:
        with rt.db.read() as s:
            found = by_keys(s, keys=keyed)
    todo: list[Pending] = []
    first_of: dict[tuple[str, str], Pending] = {}
    for p in batch:
        ident = p.ident
        if ident is not None and ident in found:
            p.future.set_result((*found[ident], False))
        elif ident is not None and ident in first_of:
            _follow(first_of[ident], p)
        else:
            if ident is not None:
                first_of[ident] = p
            todo.append(p)
    return todo


def _follow(leader: Pending, follower: Pending) -> None:
    def done(f: Future[Result]) -> None:
        if f.exception() is not None:
            follower.future.set_exception(f.exception())
        else:
            row, drow, _ = f.result()
            follower.future.set_result((row, drow, False))

    leader.future.add_done_callback(done)


Decided = list[tuple[Pending, DecisionData, Outcome]]


def _decide_all(rt: Runtime, todo: list[Pending], fresh: bool,
                keep: dict[int, tuple[DecisionData, Outcome]] | None = None
                ) -> tuple[Decided, Engine, CapacityState, dict[int, int]]:
    """Decide the batch in order, each decision seeing the GPUs and burst spend of those
    before it; `keep` (by id of the Pending): decisions taken as they are, counted the same."""
    with rt.db.read() as s:
        engine = rt.engine(s, fresh=fresh)
    origin = engine.cap
    cap = replace(origin, reserved=origin.reserved.copy())
    engine = engine.with_capacity(cap)
    taken: dict[int, int] = defaultdict(int)
    decided = []
    for p in todo:
        if p.future.done():  # answered already (e.g. an invalid reference on an earlier try)
            continue
        kept = keep.get(id(p)) if keep else None
        try:
            if kept is not None:
                decision, out = kept
            else:
                check_references(engine, p.workload)
                decision, out = decide(rt, engine, p.workload)
        except PlacementError as exc:
            p.future.set_exception(exc)
            continue
        except Exception as exc:  # one workload's failure is its own, never its batch's
            log.exception("deciding workload %r failed", p.workload.name)
            p.future.set_exception(UnprocessableError(
                f"the engine could not decide this workload ({type(exc).__name__}: {exc}); "
                "check its numbers, or report it with the request body"))
            continue
        for group, n in _groups_taken(engine, decision, out):
            cap.reserved[group] += n
            taken[group] += n
        if decision["action"] == "burst" and rt.policy.spec.team_budgets:  # later ones see it
            team = p.workload.spec.team
            engine = engine.with_team_spend({**engine.team_spend, team: engine.team_spend.get(
                team, 0.0) + committed(decision, now=utcnow())})
        decided.append((p, decision, out))
    return decided, engine, origin, taken


def _groups_taken(engine: Engine, decision: DecisionData, out: Outcome
                  ) -> list[tuple[int, int]]:
    """(capacity group, GPUs) a decision reserves: each fleet member's, else the chosen
    candidate's; none for queue or reject. Later decisions of the batch see them taken."""
    fleet = decision.get("fleet")
    if decision["action"] not in ("place", "burst"):
        return []
    if fleet:
        return [(engine.ci.group_of(m["site"], m["gpu_type"]), int(m["gpus"]))
                for m in fleet["members"]]
    if out.chosen is None:
        return []
    return [(int(out.ctx.group[out.chosen]), out.ctx.gpus_needed)]


def _rows_for(p: Pending, decision: DecisionData, out: Outcome
             ) -> tuple[Row, Row, list[Row], list[Row]]:
    """Rows of one new submission: workload, decision, events and reservations (one per
    fleet member; plain dicts: they are inserted in bulk and answered, never loaded into a
    session)."""
    wl, now = p.workload, utcnow()
    drow, ev, held = decision_rows(uuid.uuid4(), decision, out, now)
    row = {"id": drow["workload_id"], "name": wl.name, "team": wl.spec.team,
           "kind": wl.spec.kind, "priority": wl.spec.priority, "phase": ev["type"],
           "site": decision["site"], "action": decision["action"],
           "document": wl.model_dump(mode="json"), "decision_id": drow["id"],
           "idempotency_key": p.key, "created_at": now, "updated_at": now}
    submitted = {"workload_id": row["id"], "at": now, "type": "submitted",
                 "message": f"submitted by team {wl.spec.team}", "detail": {}}
    return row, drow, [submitted, ev], held


Stored = list[tuple[Pending, Row, Row, DecisionData]]


@dataclass
class Prepared:
    """A batch's rows, made once: a retry after an unknown COMMIT asks for these very ids."""

    stored: Stored
    tables: list[list[Row]]
    need: list[tuple[tuple[str, str], int]]


def _prepare(decided: Decided) -> Prepared:
    stored: Stored = []
    workloads: list[Row] = []
    decisions: list[Row] = []
    events: list[Row] = []
    held: list[Row] = []
    for p, decision, out in decided:
        row, drow, evs, res = _rows_for(p, decision, out)
        workloads.append(row)
        decisions.append(drow)
        events += evs
        held += res
        stored.append((p, row, drow, decision))
    # GPUs per (site, GPU type) over the whole batch, in the one sorted order: no deadlocks
    return Prepared(stored, [workloads, decisions, events, held], gpus_wanted(held))


def _store(rt: Runtime, prep: Prepared) -> None:
    """One transaction with bulk inserts, then one guarded update per (site, GPU type); a
    fleet's members are taken with the rest of the batch, all or none (CapacityConflict)."""
    with rt.db.write() as s:
        insert_new(s, postgresql=rt.db.dialect == "postgresql", tables=prep.tables,
                   need=prep.need)


def _stored_ids(rt: Runtime, stored: Stored) -> set[uuid.UUID] | None:
    """Which of these new workloads' rows are in the database (None: it cannot be asked)."""
    ids = [row["id"] for _, row, _, _ in stored]
    try:
        with rt.db.read() as s:
            return stored_ids(s, ids=ids)
    except OperationalError:
        return None


UNKNOWN_OUTCOME_WAIT_S = 3.0


def _settle_unknown(rt: Runtime, stored: Stored, engine: Engine) -> None:
    """The database failed while the batch was written: its COMMIT may or may not have taken.

    Never store it again blindly (that could store it twice): ask the database which rows it
    holds, for up to UNKNOWN_OUTCOME_WAIT_S. Stored: the submission succeeded. Not stored: a
    503, and a retry is safe. Still unknown: a 503 that says so; a retry with an
    Idempotency-Key is answered from the first result if it was stored."""
    deadline = time.monotonic() + UNKNOWN_OUTCOME_WAIT_S
    found = _stored_ids(rt, stored)
    while found is None and time.monotonic() < deadline:
        time.sleep(0.5)
        found = _stored_ids(rt, stored)
    rt.invalidate_capacity()
    for p, row, drow, decision in stored:
        if found is not None and row["id"] in found:
            count_decision(rt, decision, engine)
            p.future.set_result((row, drow, True))
        elif found is not None:
            p.future.set_exception(StoreUnavailableError(
                "the database failed before this submission was stored; nothing was "
                "stored, retry the request"))
        else:
            p.future.set_exception(StoreUnavailableError(
                f"the database failed while this submission was committed (workload id "
                f"{row['id']}), and whether it was stored is unknown; GET /v1/workloads/"
                f"{row['id']} tells, and a retry with an Idempotency-Key never stores it "
                "twice"))


def _connection_lost(exc: Exception) -> bool:
    """A driver error that says the connection broke (InterfaceError, an invalidated
    connection), which no value of the batch could have caused."""
    return isinstance(exc, InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def _alone(rt: Runtime, todo: list[Pending], exc: Exception) -> None:
    """A batch failed in a way one of its items may have caused (an encoding, a constraint
    the model did not catch): place each alone, so only the culprit fails, with a 4xx."""
    left = [p for p in todo if not p.future.done()]
    if len(left) > 1:
        for p in left:
            place_batch(rt, [p])
        return
    log.warning("the store refused workload %r: %s", left[0].workload.name if left else "",
                exc)
    for p in left:
        p.future.set_exception(UnprocessableError(
            f"the store refused this workload ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); check its fields"))


def place_batch(rt: Runtime, batch: list[Pending]) -> None:
    """Decide and store a batch; falls back to one-by-one on an idempotency race, and on a
    failure that one item may have caused (the others still commit)."""
    todo = _resolve_existing(rt, batch)
    race: IntegrityError | None = None
    for attempt in range(MAX_ATTEMPTS):
        decided, engine, origin, taken = _decide_all(rt, todo, fresh=attempt > 0)
        if attempt == 0 and any(d["action"] in ("queue", "reject") for _, d, _ in decided):
            # The cached state may lack recent release times: queue and reject are decided
            # again on a fresh read. Places and bursts stand (as in a batch with neither) and
            # count first, in batch order; the guarded update checks every one.
            keep = {id(p): (d, o) for p, d, o in decided if d["action"] in ("place", "burst")}
            decided, engine, origin, taken = _decide_all(rt, todo, fresh=True, keep=keep)
        if not decided:
            return
        prep = _prepare(decided)
        try:
            _store(rt, prep)
        except CapacityConflict:
            rt.metrics.capacity_conflicts.inc()
            rt.invalidate_capacity()
            continue
        except IntegrityError as exc:  # another replica stored the same Idempotency-Key
            race = exc
            break
        except OperationalError as exc:  # the database went away: did the COMMIT take?
            log.error("database error while storing a batch of %d: %s", len(decided), exc)
            _settle_unknown(rt, prep.stored, engine)
            return
        except (StatementError, ValueError, TypeError, OverflowError) as exc:
            if _connection_lost(exc):  # an outage, not this batch's values: as above
                log.error("database connection lost while storing a batch of %d: %s",
                          len(decided), exc)
                _settle_unknown(rt, prep.stored, engine)
                return
            _alone(rt, todo, exc)
            return
        rt.note_reserved(origin, taken)
        if any(decision["action"] == "burst" for _, _, _, decision in prep.stored):
            rt.spend_changed()
        for p, row, drow, decision in prep.stored:
            count_decision(rt, decision, engine)
            p.future.set_result((row, drow, True))
        return
    left = [p for p in todo if not p.future.done()]
    if race is None:
        for p in left:
            p.future.set_exception(ConflictError(
                "GPUs kept being taken by concurrent submissions; retry the request"))
    elif len(left) > 1:  # split the batch: each one alone resolves against the stored key
        for p in left:
            place_batch(rt, [p])
    else:
        for p in _resolve_existing(rt, left):  # still not stored: a real integrity error
            p.future.set_exception(race)


def submit(rt: Runtime, *, workload: Workload, idempotency_key: str | None = None) -> Result:
    """Decide and record one submission now (a batch of one). Returns (workload, decision,
    created); a retry with the same Idempotency-Key returns the first result."""
    pending = Pending(workload, idempotency_key)
    place_batch(rt, [pending])
    return pending.future.result()
