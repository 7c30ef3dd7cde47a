"""Per-process service state: database, active policy, metrics and the compiled-engine cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from sqlalchemy.orm import Session

from placement.engine import Engine
from placement.engine.compiled import CapacityState, HeldRow, ReleaseSchedule
from placement.engine.shadow import BidPrices, Demand, free_gpu_hours, price_demand
from placement.errors import PlacementError
from placement.metrics import Metrics
from placement.model import Inventory, Policy, Site, Workload
from placement.policy.loader import Bundle, policy_version
from placement.signals import Observed, SignalCache
from placement.store import policies
from placement.store.capacity import active_holds, reserved_counts
from placement.store.db import Database, as_utc, utcnow
from placement.store.inventory import inventory_version, load_inventory
from placement.store.spend import team_spend
from placement.store.workloads import submitted_since

BID_DEMAND_LIMIT = 20_000  # the newest workloads bid prices read at most


if TYPE_CHECKING:  # numba (the 'sim' extra) is imported only when a policy prices
    from placement.engine.batch import BatchEngine

class MeasuredTimes(Protocol):
    """A source of measured service times (the Triton feed) that the engine's signals merge."""

    def merge(self, observed: Observed | None, site_index: dict[str, int], groups: int
              ) -> Observed | None: ...

    def rates(self) -> dict[tuple[str, str], float]: ...

    def stop(self) -> None: ...


@dataclass
class ReloadStatus:
    """The last policy reload attempt, as `GET /v1/policies/active` reports it."""

    ok: bool  # the last attempt
    checked_at: datetime
    version: str | None = None  # active after the attempt
    last_error: str | None = None  # the latest failure, kept after later successes
    last_error_at: datetime | None = None


@dataclass
class Runtime:
    """What every request needs. The compiled engine is rebuilt only when inventory or policy
    change (the inventory version row is bumped in the same transaction as any change)."""

    db: Database
    policy: Policy
    policy_version: str
    metrics: Metrics = field(default_factory=Metrics)
    _base: Engine | None = None
    _key: tuple[int, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    on_release: Callable[[], None] | None = None
    capacity_ttl: float = 0.1
    _cap: tuple[tuple[int, str], float, CapacityState] | None = None
    reload: ReloadStatus | None = None
    config_dir: Path | None = None  # the GitOps directory the policy came from
    signals: SignalCache | None = None  # live signals from Prometheus, when configured
    triton: MeasuredTimes | None = None  # service times measured on the Triton servers we run
    _spend: tuple[float, dict[str, float]] | None = None  # (read at, burst USD per team)
    inventory_skipped: list[str] = field(default_factory=list)  # stored rows that do not load
    _bids: tuple[tuple[int, str], float, BidPrices] | None = None  # (engine key, at, prices)
    _bid_tables: tuple[tuple[int, str], BatchEngine | None] | None = None  # per engine key

    def set_policy(self, policy: Policy, version: str) -> None:
        """Switch to another policy; the next decision compiles an engine for it."""
        with self._lock:
            self.policy, self.policy_version = policy, version
        self.invalidate_capacity()

    def note_reload(self, status: ReloadStatus) -> None:
        """Record a reload attempt; the latest failure stays visible after later successes."""
        if status.last_error is None and self.reload is not None:
            status.last_error, status.last_error_at = (self.reload.last_error,
                                                       self.reload.last_error_at)
        self.reload = status
        self.metrics.policy_reload_failing.set(0 if status.ok else 1)

    def invalidate_capacity(self) -> None:
        """Forget the cached capacity state (GPUs were freed, the inventory changed, or a
        guarded update lost). Other processes see such changes within `capacity_ttl`."""
        self._cap = None

    def spend_changed(self) -> None:
        """Forget the cached team spend (this process recorded a cloud decision): the next
        decision reads it again. Other processes see it within the cache's 5 s."""
        self._spend = None

    def note_reserved(self, state: CapacityState, increments: dict[int, int]) -> None:
        """Add GPUs this process just reserved (committed) to the cached state they came from."""
        cached = self._cap
        if cached is not None and cached[2] is state:
            for group, n in increments.items():
                cached[2].reserved[group] += n

    def engine(self, session: Session, fresh: bool = False) -> Engine:
        """An engine over the current inventory, policy and active reservations.

        The inventory version and reservation state are cached for `capacity_ttl` seconds:
        reading every active reservation costs time that grows with the cluster, and
        correctness never rests on it (a guarded update refuses GPUs that are gone, or a site
        that is gone; the caller then asks for `fresh`).
        """
        cached = self._cap
        if (not fresh and cached is not None and cached[0][1] == self.policy_version
                and time.monotonic() - cached[1] < self.capacity_ttl and self._base is not None
                and self._key == cached[0]):
            return self._team_spend(self._observe(self._base.with_capacity(cached[2])))
        with self._lock:
            policy, version = self.policy, self.policy_version
        key = (inventory_version(session), version)
        base = self._base
        if base is None or self._key != key:
            with self._lock:
                skipped: list[str] = []
                base = Engine(load_inventory(session, skipped), policy, version)
                self.inventory_skipped = skipped
                self.metrics.inventory_skipped.set(len(skipped))
                self._base, self._key = base, key
        cap = self._bid_prices(session, base, key, self._read_capacity(session, base))
        self._cap = (key, time.monotonic(), cap)
        return self._team_spend(self._observe(base.with_capacity(cap)))

    def _team_spend(self, engine: Engine) -> Engine:
        """With team burst budgets in the policy: each team's burst spend this month (read
        at most every 5 s; the budget filter needs it, nothing else does)."""
        if not self.policy.spec.team_budgets:
            return engine
        cached = self._spend
        if cached is None or time.monotonic() - cached[0] > 5.0:
            with self.db.snapshot() as s:  # its statements see one state: no burst counted
                spend = team_spend(s, now=utcnow())  # twice or missed between them
            cached = self._spend = (time.monotonic(), spend)
        return engine.with_team_spend(cached[1])

    def _observe(self, engine: Engine) -> Engine:
        """Add the live signals as they are now (never waits on Prometheus or Triton)."""
        if self.signals is None and self.triton is None:
            return engine
        ci = engine.ci
        observed = (self.signals.observed(engine.inventory, ci.site_index, ci.group_index,
                                          len(ci.group_site))
                    if self.signals is not None else None)
        if self.triton is not None:
            observed = self.triton.merge(observed, ci.site_index, len(ci.group_site))
        return engine if observed is None else engine.with_observed(observed)

    def current_engine(self) -> Engine | None:
        """The engine last compiled (inventory and policy; no capacity read), if any."""
        return self._base

    def site(self, name: str) -> Site | None:
        """A site as the inventory has it now (the compiled one, else read from the store)."""
        inv = self.current_inventory()
        if inv is None or name not in {s.name for s in inv.sites}:
            with self.db.read() as s:
                inv = load_inventory(s)
        return next((site for site in inv.sites if site.name == name), None)

    def current_inventory(self) -> Inventory | None:
        """The inventory of the engine last compiled (what the signal poller queries for)."""
        base = self._base
        return base.inventory if base is not None else None

    def _read_capacity(self, session: Session, base: Engine) -> CapacityState:
        """Reserved GPUs from the capacity rows (one per site and GPU type, kept equal to the
        active reservations by the guarded updates); release times are read later, and only
        for the groups a decision finds short."""
        ci = base.ci
        reserved = np.zeros(len(ci.group_site), dtype=np.int64)
        for site, gpu, n in reserved_counts(session):
            group = ci.group_index(site, gpu)
            if group is not None:
                reserved[group] = n
        schedule = ReleaseSchedule(ci)
        schedule.overdue_hours = base.policy.spec.defaults.overdue_release_hours

        def fetch(pairs: list[tuple[str, str]]) -> list[HeldRow]:
            rows, overdue = self._release_rows(pairs, schedule.overdue_hours)
            schedule.overdue.update(ci.group_of(site, gpu) for site, gpu in overdue)
            return rows

        schedule.fetch = fetch
        return CapacityState(reserved, schedule)

    def _bid_prices(self, session: Session, base: Engine, key: tuple[int, str],
                    cap: CapacityState) -> CapacityState:
        """With `opportunity_cost` in the policy: `cap` with bid prices for the on-prem GPUs
        (placement.engine.shadow), from the workloads submitted over the policy's window and
        the GPU-hours free over as many hours ahead; recomputed every `every_minutes`, the
        same in every worker (all read the store)."""
        priced = base.policy.spec.opportunity_cost
        if priced is None:
            return cap
        # Compiled kernels (numba, the 'sim' extra): imported only by a policy that prices.
        from placement.engine.batch import BatchEngine, unsupported

        cached = self._bids
        if (cached is not None and cached[0] == key
                and time.monotonic() - cached[1] < priced.every_minutes * 60):
            return replace(cap, bid_price=cached[2].usd_per_gpu_hour, bid_note=cached[2].note)
        now = utcnow()
        since = now - timedelta(hours=priced.window_hours)
        if self._bid_tables is None or self._bid_tables[0] != key:  # shape tables, kept
            self._bid_tables = (key, None if unsupported(base) else BatchEngine(base))
        batch = self._bid_tables[1]
        demands: list[Demand] = []
        rows = submitted_since(session, since=since, limit=BID_DEMAND_LIMIT) if batch else []
        for at, doc in rows:
            try:
                wl = Workload.model_validate(doc)
                got = batch.demand(wl, (at - since).total_seconds() / 3600) if batch else None
            except (ValueError, PlacementError):
                continue  # a document the current inventory or policy cannot read
            if got is not None:
                demands.append(got)
        bids = price_demand(free_gpu_hours(base.ci, cap, priced.window_hours), demands,
                            priced.window_hours, priced.every_minutes / 60,
                            now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        self._bids = (key, time.monotonic(), bids)
        return replace(cap, bid_price=bids.usd_per_gpu_hour, bid_note=bids.note)

    def _release_rows(self, pairs: list[tuple[str, str]], overdue_hours: float
                      ) -> tuple[list[HeldRow], set[tuple[str, str]]]:
        """Active reservations of the given (site, GPU type) pairs, with hours until release,
        and the pairs holding work past its expected end. Such work is assumed to end
        `overdue_hours` from now (the policy's overdue_release_hours): never free now."""
        now = utcnow()
        with self.db.read() as s:
            rows = active_holds(s, pairs=pairs)
        held: list[HeldRow] = []
        overdue: set[tuple[str, str]] = set()
        for site, gpu, count, end in rows:
            end_utc = as_utc(end)
            hours = None if end_utc is None else (end_utc - now).total_seconds() / 3600
            if hours is not None and hours <= 0:
                hours = overdue_hours
                overdue.add((site, gpu))
            held.append((site, gpu, count, hours))
        return held, overdue


def activate_policy(session: Session, bundle: Bundle, source: str,
                    version: str | None = None) -> bool:
    """Store the bundle's policy and make it the active one; True when the version changed.
    The version defaults to the policy's content hash (a git commit where known)."""
    version = version or bundle.policy_version
    return policies.activate(session, version=version, source=source,
                             content=bundle.policy.model_dump(mode="json"))


def active_policy(session: Session) -> tuple[Policy, str] | None:
    """The stored active policy and its version, if any."""
    stored = policies.active(session)
    if stored is None:
        return None
    content, version = stored
    policy = Policy.model_validate(content)
    if version.startswith("sha256:") and policy_version(policy) != version:
        raise PlacementError(f"stored policy {version} does not match its content hash")
    return policy, version
