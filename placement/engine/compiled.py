"""The inventory compiled into NumPy arrays once, so each decision is vectorized."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from placement.engine.network import (
    LOCAL,
    LOCAL_RTT_MS,
    MEASURED,
    SIMILAR_PAIRS,
    SITE_RATE,
    WAN_LINK,
    fill_rtt,
    from_similar_pairs,
    great_circle_km,
)
from placement.errors import UnknownReferenceError
from placement.model import Inventory, Reservation, SiteSelector
from placement.model.inventory import CloudSiteSpec, OnPremSiteSpec

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]
Int8s = NDArray[np.int8]

ONPREM, ON_DEMAND, SPOT = 0, 1, 2
CAPACITY_NAMES = ("onprem", "on_demand", "spot")


@dataclass
class CompiledInventory:
    """Arrays over sites (S), client locations (C), datasets (D) and candidate rows (R)."""

    inventory: Inventory
    site_names: list[str]
    site_index: dict[str, int]
    is_cloud: Bools
    provision_h: Floats
    spot_rate: Floats
    rtt: Floats  # S x S, ms
    gbps: Floats  # S x S
    egress: Floats  # S x S, USD/GB from row site to column site
    network_source: Int8s  # 3 x S x S: where rtt, gbps, egress come from (network.SOURCE_NAMES)
    reach: Bools  # (boundaries+1) x S: clients in boundary b can reach site s (row 0: none)
    boundary_index: dict[str | None, int]
    site_boundary: Ints
    label_masks: dict[tuple[str, str], Bools]
    client_index: dict[str, int]
    client_rtt: Floats  # C x S, ms
    client_rtt_source: Int8s  # C x S (network.SOURCE_NAMES)
    egress_tiers: dict[int, tuple[Floats, Floats, Bools]]  # site -> (from GB, USD/GB, whole)
    client_boundary: Ints
    dataset_index: dict[str, int]
    dataset_size: Floats
    dataset_replicas: Bools  # D x S
    dataset_boundary: Ints
    gpu_index: dict[str, int]
    group_site: Ints  # G: (site, gpu type) groups
    group_gpu: Ints
    group_capacity: Ints  # installed GPUs (on-prem) or quota (cloud)
    row_group: Ints  # R: candidate rows (group x capacity kind)
    row_site: Ints
    row_gpu: Ints
    row_kind: Ints
    row_unit_price: Floats  # on-prem: USD per GPU-hour; cloud: see instances
    inst_row: Ints  # I: instances, sorted by row
    inst_gpus: Ints
    inst_price: Floats  # USD per instance-hour (on-demand or spot, per the row's kind)
    inst_names: list[str]
    _group_lookup: dict[tuple[int, int], int] = field(default_factory=dict)

    def group_of(self, site: str, gpu: str) -> int:
        """Group id of (site, GPU type); raises UnknownReferenceError when absent."""
        s = self.site_index.get(site)
        if s is None:
            raise UnknownReferenceError("site", site, self.site_names)
        g = self.gpu_index.get(gpu)
        key = (s, g if g is not None else -1)
        if key not in self._group_lookup:
            raise UnknownReferenceError(f"GPU type at site {site}", gpu, list(self.gpu_index))
        return self._group_lookup[key]

    def group_index(self, site: str, gpu: str) -> int | None:
        """Group id of (site, GPU type), or None when absent."""
        s, g = self.site_index.get(site), self.gpu_index.get(gpu)
        return None if s is None or g is None else self._group_lookup.get((s, g))

    @property
    def gpu_names(self) -> list[str]:
        """GPU type names by index."""
        return sorted(self.gpu_index, key=self.gpu_index.__getitem__)

    @cached_property
    def inst_types(self) -> tuple[list[str], Ints]:
        """The distinct instance type names, and per instance row the index of its name (-1
        appended last, so that index -1, no instance, stays -1)."""
        names = sorted(set(self.inst_names))
        at = {name: k for k, name in enumerate(names)}
        return names, np.array([at[n] for n in self.inst_names] + [-1], dtype=np.int64)

    @cached_property
    def names_json(self) -> bytes:
        """Site, GPU type and instance type names by index as JSON, encoded once: every
        decision's stored explanation carries them (placement.engine.explain)."""
        return orjson.dumps({"sites": self.site_names, "gpus": self.gpu_names,
                             "instances": self.inst_types[0]})

    def selector_mask(self, sel: SiteSelector) -> Bools:
        """Sites matching a selector (all given parts must match)."""
        mask = np.ones(len(self.site_names), dtype=bool)
        if sel.site_types:
            want_cloud = "cloud" in sel.site_types
            want_onprem = "onprem" in sel.site_types
            mask &= np.where(self.is_cloud, want_cloud, want_onprem)
        for key, value in sel.labels.items():
            mask &= self.label_masks.get((key, value), np.zeros_like(mask))
        if sel.sites:
            named = np.zeros_like(mask)
            named[[self.site_index[n] for n in sel.sites if n in self.site_index]] = True
            mask &= named
        return mask


@dataclass(frozen=True)
class _Network:
    rtt: Floats
    gbps: Floats
    egress: Floats
    source: Int8s  # 3 x S x S
    client_rtt: Floats
    client_rtt_source: Int8s


def _network(inv: Inventory, idx: dict[str, int]) -> _Network:
    """RTT, bandwidth and egress $/GB between sites (and RTT from client locations), each with
    where it came from. Sites come first among the places, then client locations."""
    places = [*(s.spec.location for s in inv.sites),
              *(c.spec.location for c in inv.client_locations)]
    lat = np.array([p.lat for p in places])
    lon = np.array([p.lon for p in places])
    km = great_circle_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    n_sites = len(inv.sites)
    wan = np.array([s.spec.wan_gbps for s in inv.sites])
    wan_min = np.minimum(wan[:, None], wan[None, :])
    gbps = wan_min.copy()
    egress = np.repeat(np.array([s.spec.egress_usd_per_gb for s in inv.sites])[:, None],
                       n_sites, axis=1)
    source = np.empty((3, n_sites, n_sites), dtype=np.int8)
    source[1], source[2] = WAN_LINK, SITE_RATE
    rtt_value = np.zeros(km.shape)
    measured_rtt = np.zeros(km.shape, dtype=bool)
    measured_bw = np.zeros_like(wan_min, dtype=bool)
    for site in inv.sites:
        a = idx[site.name]
        for link in site.spec.links:
            b = idx[link.to]
            if link.rtt_ms is not None:
                rtt_value[a, b] = link.rtt_ms
                measured_rtt[a, b] = True
            if link.gbps is not None:
                gbps[a, b] = link.gbps
                measured_bw[a, b] = True
                if not measured_bw[b, a]:
                    gbps[b, a] = link.gbps
            if link.egress_usd_per_gb is not None:
                egress[a, b] = link.egress_usd_per_gb
                source[2, a, b] = MEASURED
    for i, cl in enumerate(inv.client_locations):
        for target, ms in cl.spec.rtt_ms.items():
            if target in idx:
                rtt_value[n_sites + i, idx[target]] = ms
                measured_rtt[n_sites + i, idx[target]] = True
    rtt, rtt_source = fill_rtt(km, rtt_value, measured_rtt)
    # bandwidth nobody measured: from measured pairs of the same source region to the same
    # provider, else between the same providers; never above the smaller WAN link
    known = measured_bw | measured_bw.T
    if known.any():
        similar = from_similar_pairs(gbps, known, _site_groups(inv), wan_min)
        source[1][~known & (similar < wan_min)] = SIMILAR_PAIRS
        gbps = np.minimum(similar, np.where(known, np.inf, wan_min))
    source[1][known] = MEASURED
    site_rtt = rtt[:n_sites, :n_sites].copy()
    source[0] = rtt_source[:n_sites, :n_sites]
    np.fill_diagonal(site_rtt, LOCAL_RTT_MS)
    np.fill_diagonal(gbps, np.inf)
    np.fill_diagonal(egress, 0.0)
    np.fill_diagonal(source[0], LOCAL)  # LOCAL_RTT_MS: within a site, its own network
    np.fill_diagonal(source[1], LOCAL)
    np.fill_diagonal(source[2], LOCAL)  # not metered
    return _Network(site_rtt, gbps, egress, source, rtt[n_sites:, :n_sites].copy(),
                    rtt_source[n_sites:, :n_sites].copy())


def _site_groups(inv: Inventory) -> Ints:
    """Per site: a small integer per cloud provider; each on-prem site is a group of its own
    (its network is its own)."""
    keys: dict[str, int] = {}
    out = [keys.setdefault(s.spec.provider if isinstance(s.spec, CloudSiteSpec) else
                           f"onprem:{s.name}", len(keys)) for s in inv.sites]
    return np.array(out, dtype=np.int64)


def _boundaries(inv: Inventory) -> tuple[dict[str | None, int], Ints, Bools]:
    names: dict[str | None, int] = {None: 0}
    for site in inv.sites:
        for b in [site.spec.network_boundary, *site.spec.accepts_boundaries]:
            names.setdefault(b, len(names))
    for cl in inv.client_locations:
        names.setdefault(cl.spec.network_boundary, len(names))
    for ds in inv.datasets:
        names.setdefault(ds.spec.network_boundary, len(names))
    site_b = np.array([names[s.spec.network_boundary] for s in inv.sites], dtype=np.int64)
    reach = np.zeros((len(names), len(inv.sites)), dtype=bool)
    reach[site_b, np.arange(len(inv.sites))] = True
    for j, site in enumerate(inv.sites):
        for b in site.spec.accepts_boundaries:
            reach[names[b], j] = True
    return names, site_b, reach


def compile_inventory(inv: Inventory) -> CompiledInventory:
    """Build the arrays the engine scores with; call once per inventory change."""
    names = [s.name for s in inv.sites]
    idx = {n: i for i, n in enumerate(names)}
    net = _network(inv, idx)
    bnames, site_b, reach = _boundaries(inv)
    labels: dict[tuple[str, str], Bools] = {}
    for i, site in enumerate(inv.sites):
        for kv in site.metadata.labels.items():
            labels.setdefault(kv, np.zeros(len(names), dtype=bool))[i] = True
    replicas = np.zeros((len(inv.datasets), len(names)), dtype=bool)
    for i, ds in enumerate(inv.datasets):
        replicas[i, [idx[r] for r in ds.spec.replicas if r in idx]] = True
    tables = _offers(inv, idx)
    return CompiledInventory(
        inventory=inv,
        site_names=names,
        site_index=idx,
        is_cloud=np.array([s.spec.type == "cloud" for s in inv.sites], dtype=bool),
        provision_h=np.array([s.spec.provisioning_minutes / 60 if isinstance(s.spec, CloudSiteSpec)
                              else 0.0 for s in inv.sites]),
        spot_rate=np.array([s.spec.spot_interruptions_per_hour
                            if isinstance(s.spec, CloudSiteSpec) else 0.0 for s in inv.sites]),
        rtt=net.rtt, gbps=net.gbps, egress=net.egress, network_source=net.source, reach=reach,
        boundary_index=bnames,
        site_boundary=site_b, label_masks=labels,
        client_index={c.name: i for i, c in enumerate(inv.client_locations)},
        client_rtt=net.client_rtt,
        client_rtt_source=net.client_rtt_source,
        egress_tiers={i: (np.array([t.from_gb for t in s.spec.egress_tiers]),
                          np.array([t.usd_per_gb for t in s.spec.egress_tiers]),
                          np.array([t.whole_volume for t in s.spec.egress_tiers], dtype=bool))
                      for i, s in enumerate(inv.sites) if s.spec.egress_tiers},
        client_boundary=np.array([bnames[c.spec.network_boundary]
                                  for c in inv.client_locations], dtype=np.int64),
        dataset_index={d.name: i for i, d in enumerate(inv.datasets)},
        dataset_size=np.array([d.spec.size_gb for d in inv.datasets], dtype=float),
        dataset_replicas=replicas,
        dataset_boundary=np.array([bnames[d.spec.network_boundary] for d in inv.datasets],
                                  dtype=np.int64),
        **tables,
    )


def _offers(inv: Inventory, idx: dict[str, int]) -> dict[str, Any]:
    gpu_index: dict[str, int] = {}
    g_site: list[int] = []
    g_gpu: list[int] = []
    g_cap: list[int] = []
    r_group: list[int] = []
    r_kind: list[int] = []
    r_price: list[float] = []
    i_row: list[int] = []
    i_gpus: list[int] = []
    i_price: list[float] = []
    i_names: list[str] = []
    lookup: dict[tuple[int, int], int] = {}
    for site in inv.sites:
        s = idx[site.name]
        spec = site.spec
        if isinstance(spec, OnPremSiteSpec):
            for pool in spec.gpus:
                gid = gpu_index.setdefault(pool.type, len(gpu_index))
                lookup[(s, gid)] = len(g_site)
                r_group.append(len(g_site))
                g_site.append(s)
                g_gpu.append(gid)
                g_cap.append(pool.count)
                r_kind.append(ONPREM)
                r_price.append(pool.usd_per_gpu_hour)
            continue
        for offer in spec.gpus:
            gid = gpu_index.setdefault(offer.type, len(gpu_index))
            group = len(g_site)
            lookup[(s, gid)] = group
            g_site.append(s)
            g_gpu.append(gid)
            g_cap.append(offer.quota_gpus)
            for kind in (ON_DEMAND, SPOT):
                priced = [(i.type, i.gpus, i.on_demand_usd_per_hour if kind == ON_DEMAND
                           else i.spot_usd_per_hour) for i in offer.instances]
                priced = [x for x in priced if x[2] is not None]
                if not priced:
                    continue
                row = len(r_group)
                r_group.append(group)
                r_kind.append(kind)
                r_price.append(np.nan)
                for name, n, price in priced:
                    i_row.append(row)
                    i_gpus.append(n)
                    i_price.append(float(price or 0.0))
                    i_names.append(name)
    row_group = np.array(r_group, dtype=np.int64)
    inst_row = np.array(i_row, dtype=np.int64)
    gs = np.array(g_site, dtype=np.int64)
    gg = np.array(g_gpu, dtype=np.int64)
    return {
        "gpu_index": gpu_index,
        "group_site": gs,
        "group_gpu": gg,
        "group_capacity": np.array(g_cap, dtype=np.int64),
        "row_group": row_group,
        "row_site": gs[row_group] if len(row_group) else row_group,
        "row_gpu": gg[row_group] if len(row_group) else row_group,
        "row_kind": np.array(r_kind, dtype=np.int64),
        "row_unit_price": np.array(r_price, dtype=float),
        "inst_row": inst_row,
        "inst_gpus": np.array(i_gpus, dtype=np.int64),
        "inst_price": np.array(i_price, dtype=float),
        "inst_names": i_names,
        "_group_lookup": lookup,
    }


HeldRow = tuple[str, str, int, float | None]  # site, GPU type, count, hours until release
Fetch = Callable[[list[tuple[str, str]]], list[HeldRow]]


class ReleaseSchedule:
    """When reserved GPUs are expected back, per group: release times sorted, with the running
    total of GPUs freed by each.

    Built from every reservation at once, or filled on demand through `fetch` for only the
    groups a decision finds short of GPUs: a service then never reads the reservations of
    groups with room, however many there are.
    """

    def __init__(self, ci: CompiledInventory, rows: list[HeldRow] | None = None,
                 fetch: Fetch | None = None) -> None:
        self.ci = ci
        self.fetch = fetch
        self.overdue: set[int] = set()  # groups whose release times include an assumed end
        self.overdue_hours = 0.0  # the assumption (the policy's overdue_release_hours)
        self._by_group: dict[int, tuple[Floats, Ints]] = {}
        if rows is not None:
            self._fold(rows, range(len(ci.group_site)))

    def _fold(self, rows: list[HeldRow], groups: Iterable[int]) -> None:
        found: dict[int, list[tuple[float, int]]] = {g: [] for g in groups}
        for site, gpu, count, hours in rows:
            g = self.ci.group_of(site, gpu)
            found.setdefault(g, []).append((np.inf if hours is None else hours, count))
        for g, events in found.items():
            events.sort()
            self._by_group[g] = (np.array([t for t, _ in events], dtype=float),
                                 np.cumsum(np.array([n for _, n in events], dtype=np.int64)))

    def wait(self, groups: Ints, deficit: Ints) -> Floats:
        """Hours until `deficit` more GPUs are released in each group (inf if never)."""
        wanted = [int(g) for g in groups]
        missing = sorted({g for g in wanted if g not in self._by_group})
        if missing and self.fetch is not None:
            pairs = [(self.ci.site_names[int(self.ci.group_site[g])],
                      self.ci.gpu_names[int(self.ci.group_gpu[g])]) for g in missing]
            self._fold(self.fetch(pairs), missing)
        out = np.full(len(wanted), np.inf)
        for i, (g, need) in enumerate(zip(wanted, deficit.tolist(), strict=True)):
            times, cum = self._by_group.get(g, (_NO_TIMES, _NO_COUNTS))
            pos = int(np.searchsorted(cum, need, side="left"))
            if pos < len(times):
                out[i] = times[pos]
        return out


_NO_TIMES: Floats = np.zeros(0)
_NO_COUNTS: Ints = np.zeros(0, dtype=np.int64)


@dataclass
class CapacityState:
    """GPUs reserved per group, and when reserved GPUs are expected back (shared by copies
    that differ only in `reserved`)."""

    reserved: Ints  # G
    schedule: ReleaseSchedule
    # per group, USD per GPU-hour an on-prem GPU is worth to work only on-prem can run
    # (placement.engine.shadow), and where it came from; None: not priced
    bid_price: Floats | None = None
    bid_note: str = ""


def capacity_state(ci: CompiledInventory, reservations: list[Reservation]) -> CapacityState:
    """Fold reservations into per-group usage and a release schedule."""
    return capacity_state_rows(ci, [(r.site, r.gpu_type, r.count, r.remaining_hours)
                                    for r in reservations])


def capacity_state_rows(ci: CompiledInventory, rows: list[HeldRow]) -> CapacityState:
    """Like `capacity_state`, from plain (site, gpu_type, count, remaining_hours) rows."""
    reserved = np.zeros(len(ci.group_site), dtype=np.int64)
    for site, gpu, count, _ in rows:
        reserved[ci.group_of(site, gpu)] += count
    return CapacityState(reserved, ReleaseSchedule(ci, rows))
