"""A decision's explanation: built once as columns while the decision is fresh, stored
compactly, and worded per candidate only when someone reads it.

`decision_record` is what the service stores and acts on: the `Decision` fields except the
candidates (JSON-ready), plus `CANDIDATE_COLUMNS`: every candidate's values as packed arrays
(float64 and int32 rows, one entry per candidate), its rejection as the filter's `Reasons`
(templates, a code and arguments per candidate, see placement.engine.framework) and the names
they index, in one `bytes`. `render` turns a stored record back into the full `Decision`
shape, every candidate explained; `brief` renders the best few. Building the columns formats
no text and makes no per-candidate Python objects, so a decision with its explanation costs
about what the decision costs.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import orjson
from numpy.typing import NDArray

from placement.engine.compiled import CAPACITY_NAMES, ONPREM, SPOT
from placement.engine.context import moves_to, overdue_note
from placement.engine.fleet import FleetMiss, FleetPlan, fleet_dict
from placement.engine.framework import Named, Reasons
from placement.engine.network import SOURCE_NAMES
from placement.model import Decision

if TYPE_CHECKING:
    from placement.engine.outcome import Outcome, Snapshot

CANDIDATE_COLUMNS = "candidate_columns"  # the record's key for the packed columns (bytes)
FORMAT = 1
BRIEF = 3  # candidates a brief record renders (the best ranked, then the first rejected)


def _cols(values: list[np.ndarray] | np.ndarray, digits: list[int],
          zero: list[bool] | None = None) -> list[list[float | None]]:
    """Arrays -> lists, rounded, with NaN/inf as None (or 0.0 where `zero` says so): one
    conversion for all of them."""
    arr = np.array(values, dtype=float).reshape(len(values), -1)
    if arr.shape[1] == 1:  # one candidate: the same rounding without the array steps
        return [[_round(v, d, zero is not None and zero[r])]
                for r, ((v,), d) in enumerate(zip(arr.tolist(), digits, strict=True))]
    finite = np.isfinite(arr)
    scale = 10.0 ** np.array(digits, dtype=float)[:, None]
    with np.errstate(over="ignore"):  # a huge value stays as it is (inf)
        out: list[list[float | None]] = (np.rint(np.where(finite, arr, 0.0) * scale) / scale
                                         ).tolist()
    for r, i in np.argwhere(~finite).tolist():
        if zero is None or not zero[r]:
            out[r][i] = None
    return out


def _round(value: float, digits: int, zero: bool) -> float | None:
    """One value as `_cols` rounds it (half to even, the sign of a zero kept)."""
    if not math.isfinite(value):
        return 0.0 if zero else None
    scale = 10.0 ** digits
    scaled = value * scale
    if not math.isfinite(scaled):  # huge: as np.rint leaves it
        return scaled / scale
    return round(scaled) / scale or math.copysign(0.0, value)


ESTIMATES = (  # field, Decision digits, zero when missing
    ("p99_latency_ms", 3, False), ("total_usd", 2, True), ("gpu_usd", 2, True),
    ("usd_per_hour", 4, True), ("egress_gb", 3, True), ("egress_usd", 2, True),
    ("transfer_hours", 4, True), ("wait_hours", 6, False), ("finish_hours", 6, False),
    ("gpu_hours", 3, True), ("opportunity_usd", 2, True))
_SOURCE_KEYS = ("client_rtt", "lookup_rtt", "bandwidth", "egress")
_SPOT_RISK = ("estimated: {rate:g} interruptions per instance-hour (the site's "
              "spot_interruptions_per_hour) x {instances} instance(s)")


Packed = bytes | memoryview | NDArray[np.uint8]  # the stored form of Columns


class DecisionRecord(TypedDict):
    """A decision as the engine hands it to the service and the service stores it: the
    `Decision` fields but the candidates (JSON-ready), and the candidates packed."""

    workload: str
    action: str
    site: str | None
    gpu_type: str | None
    capacity: str | None
    instance_type: str | None
    summary: str
    estimates: dict[str, Any] | None
    rule: str | None
    constraint_rules: list[str]
    policy_version: str
    signals: list[dict[str, Any]]
    data_moves: list[dict[str, Any]]
    fleet: dict[str, Any] | None
    candidate_columns: Packed | None  # Columns, packed (None: stored before)


INT32 = (-(2 ** 31), 2 ** 31 - 1)  # what an int row holds
Ref = dict[str, int]  # a stored row: {"f": float row} or {"i": int row}


@dataclass
class Columns:
    """Every candidate of one decision as rows of two matrices, float64 and int32 (one entry
    per candidate), and the JSON-ready header that says what the rows mean; `pack` and
    `unpack` are its stored form. Rows are added while building, then `seal`ed."""

    header: dict[str, Any]
    encoded: dict[str, bytes] = field(default_factory=dict)  # header parts as JSON already
    names: dict[str, Ref] = field(default_factory=dict)  # the fixed rows, by name
    floats: Any = None  # float64 matrix, rows x candidates, once sealed
    ints: Any = None  # int32 matrix
    packed: NDArray[np.uint8] | None = None  # the stored form, once sealed
    _blocks: tuple[list[np.ndarray], list[np.ndarray]] = field(
        default_factory=lambda: ([], []))  # rows (1-D) or blocks of rows (2-D), in order
    _count: list[int] = field(default_factory=lambda: [0, 0])
    _ids: dict[int, Ref] = field(default_factory=dict)

    @property
    def kept(self) -> Mapping[int, Ref]:
        """The arrays kept so far, by id."""
        return self._ids

    def add(self, values: np.ndarray) -> Ref:
        """Keep one array (once, however often it is added); the header's reference to it."""
        key = id(values)
        got = self._ids.get(key)
        if got is None:
            got = self._ids[key] = self._keep(values)
        return got

    def put(self, name: str, values: np.ndarray) -> Ref:
        """Keep `values` as the fixed row `name`."""
        got = self.names[name] = self._keep(values)
        self._ids.setdefault(id(values), got)
        return got

    def put_block(self, block: np.ndarray, names: Mapping[str, Ref]) -> None:
        """Keep a block of rows that comes first (the shape's rows: `names` say where)."""
        kind = block.dtype.kind != "f"
        assert self._count[kind] == 0
        self._blocks[kind].append(block.reshape(-1))
        self._count[kind] = len(block)
        self.names.update(names)

    def _keep(self, values: np.ndarray) -> Ref:
        kind = values.dtype.kind != "f"
        self._blocks[kind].append(values)
        self._count[kind] += 1
        return {"i" if kind else "f": self._count[kind] - 1}

    def seal(self) -> Columns:
        """Pack the rows, once, into the stored form: [u32 header size][header JSON, padded
        to 8 bytes][float64 rows][int32 rows]; `floats` and `ints` are views of it."""
        n = self.header["n"]
        (f_rows, i_rows), (nf, ni) = self._blocks, self._count
        head = orjson.dumps({**self.header, "rows": self.names, "shape": self._count,
                             **{k: orjson.Fragment(v) for k, v in self.encoded.items()}})
        start = -(-(4 + len(head)) // 8) * 8
        buf = np.empty(start + n * (8 * nf + 4 * ni), dtype=np.uint8)  # all written below
        view = memoryview(buf.data)
        view[:4] = struct.pack("<I", start - 4)
        view[4:start] = head + b" " * (start - 4 - len(head))  # JSON whitespace
        f = buf[start:start + 8 * n * nf].view(np.float64).reshape(nf, n)
        i = buf[start + f.nbytes:].view(np.int32).reshape(ni, n)
        if n:
            if f_rows:
                np.concatenate(f_rows, out=f.reshape(-1))
            if i_rows:
                np.concatenate(i_rows, out=i.reshape(-1), casting="unsafe")
        self.floats, self.ints, self.packed = f, i, buf
        return self

    def get(self, ref: Mapping[str, int]) -> np.ndarray:
        ((kind, row),) = ref.items()
        got: np.ndarray = (self.floats if kind == "f" else self.ints)[row]
        return got

    def row(self, name: str) -> np.ndarray:
        return self.get(self.names[name])

    @staticmethod
    def unpack(packed: Packed) -> Columns:
        data = memoryview(packed.data) if isinstance(packed, np.ndarray) else memoryview(packed)
        (size,) = struct.unpack_from("<I", data)
        header = orjson.loads(data[4:4 + size])
        n = header["n"]
        nf, ni = header.pop("shape")
        names = header.pop("rows")
        if n == 0:
            f, i = np.zeros((nf, 0)), np.zeros((ni, 0), dtype=np.int32)
        else:
            f = np.frombuffer(data, np.float64, nf * n, 4 + size).reshape(nf, n)
            i = np.frombuffer(data, np.int32, ni * n, 4 + size + f.nbytes).reshape(ni, n)
        return Columns(header, names=names, floats=f, ints=i)


def _arg(cols: Columns, value: Any, rejected: Callable[[], np.ndarray]) -> Mapping[str, Any]:
    """One `Reasons` argument as the header holds it: a value, a stored row, names and a
    stored row of indices (`Named`), or (other objects per candidate) the values of the
    candidates the filter rejected first, in order."""
    if value is None or type(value) in (str, int, bool):
        return {"v": value}
    if isinstance(value, Named):
        return {"named": list(value.names), "at": cols.add(value.index)}
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind == "O" or kind == "b" or (kind in "iu" and id(value) not in cols.kept and len(
                value) and (value.min() < INT32[0] or value.max() > INT32[1])):
            return {"o": value[rejected()].tolist()}  # as they are: objects, bools, big ints
        return cols.add(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"nonfinite": repr(value)}  # JSON has no inf or nan
    return {"v": value}


def build_columns(engine: Snapshot, out: Outcome) -> Columns:
    """The decision's candidates as columns: values, reasons by template and code, names."""
    c, ci = out.ctx, engine.ci
    n = c.n
    cols = Columns({"format": FORMAT, "n": n, "names": {
        "sites": ci.site_names, "gpus": ci.gpu_names, "instances": ci.inst_types[0]},
        "filters": out.filter_names, "service": c.workload.spec.is_service},
        encoded={"names": ci.names_json, "missing": _missing_sites(engine, out)})
    add, put = cols.add, cols.put
    shape = out.shape or engine.shape(c.workload)
    if shape.columns is None:  # the same for every decision of the shape
        shape.columns = _shape_rows(c)
    ints, floats, names, sources = shape.columns
    cols.put_block(ints, names)
    if floats is not None:
        cols.put_block(floats, {"spot_rate": {"f": 0}})
    cols.header["sources"] = sources
    rank = np.zeros(n, dtype=np.int64)  # 0: not ranked (not considered)
    rank[out.ranking] = np.arange(1, len(out.ranking) + 1)
    put("rank", rank)
    arrays = [c.p99_ms, c.total_usd, c.gpu_usd, c.usd_per_hour, c.egress_gb, c.egress_usd,
              c.transfer_hours, c.wait_hours, c.finish_hours, c.gpu_hours, c.opportunity_usd]
    cols.header["estimates"] = [add(np.asarray(a, dtype=np.float64)) for a in arrays]
    cols.header["criteria"] = [
        {"name": k, "unit": out.units.get(k, ""), "weight": out.weights[k],
         "raw": add(np.asarray(out.raw[k], dtype=np.float64)), "score": add(out.scores[k])}
        for k in out.raw]
    put("total", np.asarray(out.total, dtype=np.float64))
    price = c.cap.bid_price
    if price is not None:
        cols.header["bid_note"] = c.cap.bid_note
        put("bid_price", np.asarray(price, dtype=np.float64)[c.group])
    fails = out.fails  # filter k failed: bit k % 31 of row fails{k // 31}
    for r in range(max(1, (len(fails) + 30) // 31)):
        part = fails[31 * r:31 * (r + 1)]
        put(f"fails{r}", (part.astype(np.int64) << np.arange(len(part))[:, None]).sum(axis=0)
            if len(part) else np.zeros(n, dtype=np.int64))
    first = (np.where(fails.any(axis=0), np.argmax(fails, axis=0), -1) if len(fails)
             else np.full(n, -1))
    reasons: dict[str, Any] = {}
    for k in np.flatnonzero(np.bincount(first[first >= 0], minlength=len(fails))).tolist():
        why = out.filter_results[k].reasons()
        idx: list[np.ndarray] = []

        def rejected(k: int = k, idx: list[np.ndarray] = idx) -> np.ndarray:
            if not idx:  # the candidates filter k rejected first, in order
                idx.append(np.flatnonzero(first == k))
            return idx[0]

        reasons[str(k)] = {
            "templates": list(why.templates),
            "code": _arg(cols, why.code, rejected),
            "args": {a: _arg(cols, v, rejected) for a, v in why.args.items()}}
    cols.header["reasons"] = reasons
    return cols.seal()


def _shape_rows(c: Any) -> tuple[np.ndarray, np.ndarray | None, dict[str, Ref],
                                  list[Ref | dict[str, int]]]:
    """The rows that depend only on the workload's shape: as one int32 block (site, GPU type,
    capacity kind, instance type, instances billed, where each network number comes from),
    where each is in it, a float block (the site's spot rate per instance-hour, where a
    candidate is spot) and the sources' references."""
    d = c.data
    rows = {"site": c.site, "gpu": c.gpu, "kind": c.kind,
            "instance": c.ci.inst_types[1][c.billing.instance[c.rows]],
            "instances": c.billing.instances[c.rows], "src:client_rtt": c.client_rtt_source}
    for key, arr in zip(_SOURCE_KEYS[1:], (d.lookup_rtt_source, d.gbps_source,
                                           d.egress_source), strict=True):
        if len(arr):
            rows[f"src:{key}"] = arr[c.site]
    block = np.array(list(rows.values()), dtype=np.int32).reshape(len(rows), c.n)
    names = {name: {"i": k} for k, name in enumerate(rows)}
    spot = c.ci.spot_rate[c.site][None, :] if (c.kind == SPOT).any() else None
    return block, spot, names, [names.get(f"src:{key}", {}) for key in _SOURCE_KEYS]


def _missing_sites(engine: Snapshot, out: Outcome) -> bytes:
    """Sites without any requested GPU type as JSON rows (the same for every workload of one
    shape, so encoded once per shape)."""
    shape = out.shape or engine.shape(out.ctx.workload)
    if shape.missing_sites is None:
        present = set(out.ctx.site.tolist())
        wanted = "/".join(out.ctx.workload.spec.gpu.types)
        shape.missing_sites = orjson.dumps([
            {"site": site.name, "site_type": site.spec.type, "gpu_type": None,
             "capacity": None, "instance_type": None, "feasible": False,
             "rejected_by": "capacity",
             "reason": f"offers no {wanted} (has: "
                       f"{', '.join(g.type for g in site.spec.gpus) or 'no GPUs'})",
             "also_failed": [], "criteria": {}, "total_score": None, "rank": None,
             "estimates": None}
            for s, site in enumerate(engine.inventory.sites) if s not in present])
    return shape.missing_sites


def candidates(cols: Columns, idx: list[int] | None = None) -> list[dict[str, Any]]:
    """Candidates `idx` (every one by default, in the engine's order) in the `Candidate`
    shape: values rounded as the model documents them, reasons worded now."""
    h = cols.header
    pick = np.arange(h["n"]) if idx is None else np.asarray(idx, dtype=np.int64)
    names = h["names"]
    sites, gpus, insts = names["sites"], names["gpus"], names["instances"]
    f = cols.floats[:, pick]
    ints = cols.ints[:, pick].tolist()

    def col(name: str) -> list[Any]:
        got: list[Any] = ints[cols.names[name]["i"]]
        return got

    crit = h["criteria"]
    k_crit = len(crit)
    refs = (h["estimates"] + [k["raw"] for k in crit] + [k["score"] for k in crit]
            + [cols.names["total"]])
    rounded = _cols(f[[ref["f"] for ref in refs]],
                    [d for _, d, _ in ESTIMATES] + [6] * (2 * k_crit) + [3],
                    [z for _, _, z in ESTIMATES] + [False] * (2 * k_crit + 1))
    est, vals = rounded[:len(ESTIMATES)], rounded[len(ESTIMATES):]
    if h["service"]:
        est[8] = [None] * len(pick)
    fails = _failed(cols, col)
    firsts = [failed[0] if failed else -1 for failed in fails]
    words: list[str | None] = [None] * len(pick)
    reasons_of = _reasons(cols)
    for k in sorted(set(firsts) - {-1}):  # each filter's reasons worded together
        js = [j for j, first in enumerate(firsts) if first == k]
        for j, text in zip(js, reasons_of(k).texts(pick[js]), strict=True):
            words[j] = text
    sources = _sources(cols, pick, col, ints)
    filters = h["filters"]
    out = []
    for j, (site, gpu, kind, inst, rank) in enumerate(zip(
            col("site"), col("gpu"), col("kind"), col("instance"), col("rank"), strict=True)):
        failed = fails[j]
        estimates: dict[str, Any] = {name: e[j] for (name, _, _), e in zip(ESTIMATES, est,
                                                                          strict=True)}
        estimates["sources"] = sources[j]
        out.append({
            "site": sites[site], "site_type": "onprem" if kind == ONPREM else "cloud",
            "gpu_type": gpus[gpu], "capacity": CAPACITY_NAMES[kind],
            "instance_type": insts[inst] if inst >= 0 else None,
            "feasible": not failed,
            "rejected_by": filters[failed[0]] if failed else None,
            "reason": words[j],
            "also_failed": [filters[k] for k in failed[1:]],
            "criteria": {k["name"]: {"raw": vals[r][j], "unit": k["unit"],
                                     "score": vals[k_crit + r][j], "weight": k["weight"]}
                         for r, k in enumerate(crit)},
            "total_score": vals[-1][j] if rank else None,
            "rank": rank or None,
            "estimates": estimates})
    return out


def _failed(cols: Columns, col: Callable[[str], list[Any]]) -> list[list[int]]:
    """Per picked candidate: the filters it failed, in the engine's order."""
    k_all = len(cols.header["filters"])
    rows = [col(f"fails{r}") for r in range((k_all + 30) // 31 or 1)]
    return [[k for k in range(k_all) if bits[k // 31] >> (k % 31) & 1] if any(bits) else []
            for bits in zip(*rows, strict=True)]


def _reasons(cols: Columns) -> Callable[[int], Reasons]:
    """Filter k's `Reasons`, as the decision stored them."""
    h = cols.header
    built: dict[int, Reasons] = {}

    def value(ref: Mapping[str, Any], idx: Callable[[], np.ndarray]) -> Any:
        if "v" in ref:
            return ref["v"]
        if "nonfinite" in ref:
            return float(ref["nonfinite"])
        if "o" in ref:
            full = np.empty(h["n"], dtype=object)
            full[idx()] = ref["o"]
            return full
        if "named" in ref:
            return Named(ref["named"], cols.get(ref["at"]))
        return cols.get(ref)

    def reasons_of(k: int) -> Reasons:
        why = built.get(k)
        if why is None:
            spec = h["reasons"][str(k)]
            first: list[np.ndarray] = []

            def idx() -> np.ndarray:  # the candidates whose first failed filter is k
                if not first:
                    first.append(np.flatnonzero(_first_failed(cols) == k))
                return first[0]

            code = value(spec["code"], idx)
            why = built[k] = Reasons(spec["templates"], code if isinstance(code, int) else
                                     np.asarray(code, dtype=np.int64),
                                     {a: value(r, idx) for a, r in spec["args"].items()})
        return why

    return reasons_of


def _first_failed(cols: Columns) -> np.ndarray:
    k_all = len(cols.header["filters"])
    first = np.full(cols.header["n"], -1)
    for k in reversed(range(k_all)):
        hit = (cols.row(f"fails{k // 31}") >> (k % 31)) & 1
        first = np.where(hit == 1, k, first)
    return first


def _sources(cols: Columns, pick: np.ndarray, col: Callable[[str], list[Any]],
             ints: list[list[int]]) -> list[dict[str, str]]:
    """Per picked candidate: where each network number in its estimates comes from
    (`measured` or `estimated: <method>`), the spot rate behind a spot candidate's GPU-hours
    and the bid price behind an on-prem one's opportunity cost."""
    h = cols.header
    codes = [ints[ref["i"]] if ref else [-1] * len(pick) for ref in h["sources"]]
    seen: dict[tuple[int, ...], dict[str, str]] = {}
    rows = []
    for row in zip(*codes, strict=True):
        got = seen.get(row)
        if got is None:
            got = seen[row] = {name: SOURCE_NAMES[code]
                               for name, code in zip(_SOURCE_KEYS, row, strict=True) if code >= 0}
        rows.append(dict(got))
    kinds = col("kind")
    if SPOT in kinds:
        rate, count = cols.row("spot_rate")[pick].tolist(), col("instances")
        for j, kind in enumerate(kinds):
            if kind == SPOT:
                rows[j]["spot_risk"] = _SPOT_RISK.format(rate=rate[j], instances=count[j])
    note = h.get("bid_note")
    if note is not None:
        price = cols.row("bid_price")[pick].tolist()
        for j, kind in enumerate(kinds):
            if kind == ONPREM:
                rows[j]["opportunity"] = f"{note}: ${price[j]:,.4f} per GPU-hour"
    return rows


def split_record(record: Mapping[str, Any]
                 ) -> tuple[dict[str, Any], memoryview | bytes | None]:
    """A record as its two stored parts: the fields (JSON) and the packed candidates (bytes
    for the store's binary column)."""
    packed = record.get(CANDIDATE_COLUMNS)
    return ({k: v for k, v in record.items() if k != CANDIDATE_COLUMNS},
            memoryview(packed.data) if isinstance(packed, np.ndarray) else packed)


def ordered(cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The explanation's order: ranked candidates best first, then the rest by site."""
    return sorted(cands, key=lambda x: (x["rank"] is None, x["rank"] or 0, x["site"]))


def render(record: Mapping[str, Any], columns: Packed | None = None
           ) -> dict[str, Any]:
    """A stored record as the full `Decision` (JSON-ready), every candidate explained. A
    record stored before columns existed carries its candidates already; it is returned as
    it is."""
    data = columns if columns is not None else record.get(CANDIDATE_COLUMNS)
    out = {k: v for k, v in record.items() if k != CANDIDATE_COLUMNS}
    if data is None:
        out.setdefault("candidates", [])
        return out
    cols = Columns.unpack(data)
    out["candidates"] = ordered(candidates(cols)) + cols.header["missing"]
    out["candidates_omitted"] = 0
    return out


def brief(record: Mapping[str, Any], columns: Packed | None = None,
          top: int = BRIEF) -> dict[str, Any]:
    """A stored record as a `Decision` with only its best `top` candidates rendered (the
    ranked ones first, then the rejected by site, then sites without the GPU type);
    `candidates_omitted` counts the rest, which GET /v1/decisions/{id} renders."""
    data = columns if columns is not None else record.get(CANDIDATE_COLUMNS)
    if data is None:
        return render(record)
    out = {k: v for k, v in record.items() if k != CANDIDATE_COLUMNS}
    cols = Columns.unpack(data)
    rank = cols.row("rank")
    ranked = np.flatnonzero(rank > 0)
    best = ranked[np.argsort(rank[ranked])][:top].tolist()
    if len(best) < top:
        rest = np.flatnonzero(rank == 0)
        names = cols.header["names"]["sites"]
        site = cols.row("site")
        by_site = sorted(rest.tolist(), key=lambda i: names[int(site[i])])
        best += by_site[:top - len(best)]
    shown = ordered(candidates(cols, best)) if best else []
    shown += cols.header["missing"][:top - len(shown)]  # sites without the GPU type, last
    out["candidates"] = shown
    out["candidates_omitted"] = cols.header["n"] + len(cols.header["missing"]) - len(shown)
    return out


def _label(out: Outcome, i: int) -> str:
    """A candidate in a few words: site, capacity and GPU type."""
    c = out.ctx
    gpus = {v: k for k, v in c.ci.gpu_index.items()}
    return (f"{c.ci.site_names[int(c.site[i])]} {CAPACITY_NAMES[int(c.kind[i])]} "
            f"{gpus[int(c.ci.row_gpu[c.rows[i]])]}")


def _tie_break(out: Outcome, queue_only: bool) -> str:
    """When the chosen candidate ties with the runner-up on what ranks first (the score; the
    expected wait when nothing can start in time): which of the engine's next ranking keys
    decided, named in the engine's own order."""
    c, chosen = out.ctx, out.chosen
    if chosen is None or len(out.ranking) < 2:
        return ""
    names = c.ci.site_names
    keys: list[tuple[str, Callable[[int], Any]]]
    if queue_only:  # Engine._score's lexsort keys, primary first
        keys = [("expected wait", lambda i: float(c.wait_hours[i])),
                ("cost", lambda i: float(c.total_usd[i])),
                ("site name", lambda i: names[int(c.site[i])])]
    else:
        keys = [("score", lambda i: -round(float(out.total[i]), 9)),
                ("cost", lambda i: float(c.total_usd[i])),
                ("wait", lambda i: float(c.wait_hours[i])),
                ("site name", lambda i: names[int(c.site[i])]),
                ("capacity kind", lambda i: int(c.kind[i]))]
    primary = c.wait_hours if queue_only else -np.round(out.total, 9)  # the ranking's own
    rest = out.ranking[1:]
    tied = rest[primary[rest] == primary[chosen]].tolist()
    if not tied:
        return ""
    runner = tied[0]
    decided = next((name for name, key in keys[1:] if key(chosen) != key(runner)), "")
    why = {
        "cost": f"the lower estimated cost decided (${float(c.total_usd[chosen]):,.2f} "
                f"against ${float(c.total_usd[runner]):,.2f})",
        "wait": f"the shorter expected wait decided ({float(c.wait_hours[chosen]):.2f} h "
                f"against {float(c.wait_hours[runner]):.2f} h)",
        "site name": "the site name decided (alphabetical order)",
        "capacity kind": "the capacity kind decided (on-prem, then on-demand, then spot)",
    }.get(decided, "they tie on every key; the first in inventory order was taken")
    more = f" and {len(tied) - 1} more" if len(tied) > 1 else ""
    order = ", ".join(name for name, _ in keys[1:])
    return (f"; tied on {keys[0][0]} with {_label(out, runner)}{more}: {why}; ties are "
            f"broken by {order}, in that order")


def _summary(out: Outcome, chosen: dict[str, Any] | None) -> str:
    c = out.ctx
    if chosen is None:
        counts = Counter(out.filter_names[int(np.argmax(out.fails[:, i]))]
                         for i in range(c.n))
        why = ", ".join(f"{k}: {v}" for k, v in counts.most_common()) or "no site offers the GPU"
        return f"reject: no candidate passes the filters (rejections by filter: {why})"
    where = f"{chosen['site']} ({chosen['capacity']} {chosen['gpu_type']}"
    where += f", {chosen['instance_type']})" if chosen["instance_type"] else ")"
    feasible = int((~out.fails.any(axis=0)).sum())
    queue_only = feasible == 0  # only candidates held back by the wait filter were ranked
    tie = _tie_break(out, queue_only)
    score = f"score {chosen['total_score']:.1f}, best of {feasible} feasible candidate(s)"
    est = chosen["estimates"]
    wait = est["wait_hours"] or 0.0
    assumed = overdue_note(c, out.chosen) if out.chosen is not None else ""
    if out.action == "queue" and queue_only:
        waiting = int(out.considered.sum())
        limit = c.rule.max_wait_hours
        return (f"queue at {where}: no candidate can start within max wait {limit:g} h; the "
                f"shortest expected wait is {chosen['site']}'s {wait:.2f} h{assumed} "
                f"({waiting} candidate(s) would qualify once GPUs free up){tie}")
    if out.action == "queue":
        return f"queue at {where}: expected wait {wait:.2f} h{assumed}; {score}{tie}"
    if out.action == "burst":
        return (f"burst to {where}: ${est['usd_per_hour']:,.2f}/h, ready in {wait:.2f} h; "
                f"{score}{tie}")
    return f"place on {where}; {score}{tie}"


def decision_dict(engine: Snapshot, out: Outcome) -> dict[str, Any]:
    """The outcome as the full `Decision` (JSON-ready, every candidate explained)."""
    return render(decision_record(engine, out))


def build_decision(engine: Snapshot, out: Outcome) -> Decision:
    """The outcome as a validated `Decision` model."""
    return Decision.model_validate(decision_dict(engine, out))


def decision_record(engine: Snapshot, out: Outcome) -> DecisionRecord:
    """The outcome as the service stores it: the `Decision` fields but the candidates
    (JSON-ready), and every candidate as columns under `CANDIDATE_COLUMNS` (bytes)."""
    cols = build_columns(engine, out)
    chosen = candidates(cols, [out.chosen])[0] if out.chosen is not None else None
    observed = out.ctx.observed
    signals = (observed.relevant(out.ctx.workload, set(np.asarray(
        engine.ci.site_names, dtype=object)[np.unique(out.ctx.site)].tolist()))
               if observed is not None else [])
    plan = out.fleet if isinstance(out.fleet, FleetPlan) and chosen is not None else None
    summary = _fleet_summary(plan, out) if plan is not None else _summary(out, chosen)
    unused = [s for s in signals if s["status"] != "fresh"]
    if unused:
        summary += "; store state used for signals not fresh: " + ", ".join(
            f"{s['site']} {s['signal']}{' ' + s['key'] if s['key'] else ''} ({s['status']})"
            for s in unused)
    fleet = None
    moves = (moves_to(engine.ci, out.ctx.data, int(out.ctx.site[out.chosen]))
             if out.chosen is not None else [])
    if plan is not None and chosen is not None:
        fleet = fleet_dict(plan, out, CAPACITY_NAMES, engine.ci.gpu_names, engine.ci.inst_names)
        chosen = {**chosen, "estimates": _fleet_estimates(out, plan, chosen["estimates"])}
        moves = [m for site in sorted({m.site for m in plan.members})
                 for m in moves_to(engine.ci, out.ctx.data, site)]
    elif isinstance(out.fleet, FleetMiss):
        summary += f"; no fleet: {out.fleet.reason}"
    return {
        "workload": out.ctx.workload.name,
        "action": out.action,
        "site": chosen["site"] if chosen else None,
        "gpu_type": chosen["gpu_type"] if chosen else None,
        "capacity": chosen["capacity"] if chosen else None,
        "instance_type": chosen["instance_type"] if chosen else None,
        "summary": summary,
        "estimates": chosen["estimates"] if chosen else None,
        "rule": out.rule.name,
        "constraint_rules": sorted({c.rule for c in out.rule.constraints}),
        "policy_version": out.policy_version,
        "signals": signals,
        "data_moves": moves,
        "fleet": fleet,
        "candidate_columns": cols.packed,
    }


def _fleet_estimates(out: Outcome, plan: FleetPlan, one: dict[str, Any] | None
                     ) -> dict[str, Any]:
    """The fleet's estimates: totals over its members, the worst routed p99 (the sources are
    the largest member's)."""
    c = out.ctx
    hours = c.hours
    sites = np.unique(np.array([m.site for m in plan.members]))
    routed = plan.routes > 0
    p99 = float(np.nanmax(np.where(routed, plan.p99_ms, -np.inf))) if routed.any() else None
    gpu_usd_h = sum(m.usd_per_hour for m in plan.members)
    lookups_usd_h = plan.usd_per_hour - gpu_usd_h - plan.egress_usd / hours
    egress_usd = plan.egress_usd + lookups_usd_h * hours
    lookup_gb_h = float(sum(
        plan.routes[:, k].sum() * c.data.lookup_egress_gb_per_hour[m.site]
        for k, m in enumerate(plan.members)))
    waits = [float(c.wait_hours[m.pos]) for m in plan.members]
    factor = [float(1.0 + c.spot_overhead[m.pos]) for m in plan.members]
    return {"sources": (one or {}).get("sources", {}),
            "p99_latency_ms": None if p99 is None else round(p99, 3),
            "total_usd": round(gpu_usd_h * hours + egress_usd, 2),
            "gpu_usd": round(gpu_usd_h * hours, 2),
            "usd_per_hour": round(gpu_usd_h, 4),
            "egress_gb": round(float(c.data.egress_gb[sites].sum()) + lookup_gb_h * hours, 3),
            "egress_usd": round(egress_usd, 2),
            "transfer_hours": round(float(c.data.transfer_hours[sites].max()), 4),
            "wait_hours": round(max(waits), 4),
            "finish_hours": None,
            "gpu_hours": round(sum(m.gpus * hours * f for m, f in zip(plan.members, factor,
                                                                        strict=True)), 3),
            "opportunity_usd": round(sum(m.opportunity_usd_per_hour for m in plan.members)
                                     * hours, 2)}


def _fleet_summary(plan: FleetPlan, out: Outcome) -> str:
    ci = out.ctx.ci
    members = ", ".join(f"{ci.site_names[m.site]} {CAPACITY_NAMES[m.kind]} "
                        f"{ci.gpu_names[int(ci.row_gpu[m.row])]} x{m.replicas}"
                        for m in plan.members)  # a site may offer two GPU types or kinds
    verb = "burst" if plan.action == "burst" else "place"
    sites = len({m.site for m in plan.members})
    return (f"{verb} a fleet of {sites} site(s) ({members}) for "
            f"{len(plan.locations)} client location(s), {sum(plan.demand_rps):g} requests/s: "
            f"${plan.usd_per_hour:,.2f}/h ({plan.method})")
