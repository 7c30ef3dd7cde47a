"""Cross-document checks: duplicate names and references to things that do not exist."""

from __future__ import annotations

from typing import Any

from placement.errors import Issue
from placement.model import ClientLocation, Dataset, Policy, Site, SiteSelector
from placement.model.policy import known_criteria
from placement.policy.yamlsrc import SourceDoc, format_path

Grouped = dict[str, list[tuple[Any, SourceDoc]]]


def _issue(doc: SourceDoc, path: tuple[str | int, ...], prefix: str, msg: str, fix: str) -> Issue:
    return Issue(doc.file, doc.line_of(path), prefix + format_path(path), msg, fix)


def _known(names: set[str]) -> str:
    shown = sorted(names)
    text = ", ".join(shown[:12]) + (" ..." if len(shown) > 12 else "")
    return text or "none defined"


def _duplicates(by_kind: Grouped) -> list[Issue]:
    issues = []
    for kind, items in by_kind.items():
        if kind.startswith("invalid-"):
            continue
        first: dict[str, SourceDoc] = {}
        for obj, doc in items:
            name = obj.metadata.name
            if name in first:
                prev = first[name]
                issues.append(_issue(doc, ("metadata", "name"), f"{kind} {name!r} ",
                                     f"duplicate name; also defined at {prev.file}:{prev.line}",
                                     "rename one of them or delete the copy"))
            else:
                first[name] = doc
    return issues


def _site_issues(items: list[tuple[Site, SourceDoc]], sites: set[str]) -> list[Issue]:
    issues = []
    for site, doc in items:
        pre = f"Site {site.name!r} "
        for i, link in enumerate(site.spec.links):
            if link.to not in sites:
                issues.append(_issue(doc, ("spec", "links", i, "to"), pre,
                                     f"link to unknown site {link.to!r}",
                                     f"use one of: {_known(sites)}"))
            elif link.to == site.name:
                issues.append(_issue(doc, ("spec", "links", i, "to"), pre,
                                     "a site cannot link to itself", "remove this link"))
        seen: set[str] = set()
        types: list[str] = [g.type for g in site.spec.gpus]
        for i, gpu_type in enumerate(types):
            if gpu_type in seen:
                issues.append(_issue(doc, ("spec", "gpus", i, "type"), pre,
                                     f"GPU type {gpu_type!r} listed twice",
                                     "merge the two entries into one"))
            seen.add(gpu_type)
    return issues


def _dataset_issues(items: list[tuple[Dataset, SourceDoc]], sites: set[str]) -> list[Issue]:
    return [
        _issue(doc, ("spec", "replicas", i), f"Dataset {ds.name!r} ",
               f"replica on unknown site {rep!r}", f"use one of: {_known(sites)}")
        for ds, doc in items
        for i, rep in enumerate(ds.spec.replicas)
        if rep not in sites
    ]


def _client_issues(items: list[tuple[ClientLocation, SourceDoc]], sites: set[str]) -> list[Issue]:
    return [
        _issue(doc, ("spec", "rtt_ms", target), f"ClientLocation {cl.name!r} ",
               f"RTT given to unknown site {target!r}", f"use one of: {_known(sites)}")
        for cl, doc in items
        for target in cl.spec.rtt_ms
        if target not in sites
    ]


def _selector_issues(sel: SiteSelector, doc: SourceDoc, path: tuple[str | int, ...],
                     pre: str, sites: set[str], labels: set[tuple[str, str]]) -> list[Issue]:
    issues = []
    for key, value in sel.labels.items():
        if (key, value) not in labels:
            issues.append(_issue(doc, (*path, "labels", key), pre,
                                 f"no site has the label {key}={value}",
                                 "label a site with it or correct the selector"))
    for i, name in enumerate(sel.sites):
        if name not in sites:
            issues.append(_issue(doc, (*path, "sites", i), pre, f"unknown site {name!r}",
                                 f"use one of: {_known(sites)}"))
    return issues


def _policy_issues(items: list[tuple[Policy, SourceDoc]], sites: set[str],
                   labels: set[tuple[str, str]]) -> list[Issue]:
    issues = []
    for pol, doc in items:
        pre = f"Policy {pol.name!r} "
        known = known_criteria()
        places = [(("spec", "defaults", "weights"), pol.spec.defaults.weights)] + [
            (("spec", "rules", i, "weights"), r.weights) for i, r in enumerate(pol.spec.rules)
            if r.weights is not None]
        for path, weights in places:
            for name in weights.plugin_weights():
                if name not in known:
                    issues.append(_issue(doc, (*path, name), pre, f"unknown criterion {name!r}",
                                         f"use one of: {', '.join(known)} (a score plugin "
                                         "registers any other)"))
        for i, rule in enumerate(pol.spec.rules):
            for part in ("require", "forbid"):
                sel = getattr(rule, part)
                if sel is not None:
                    issues.extend(_selector_issues(sel, doc, ("spec", "rules", i, part), pre,
                                                   sites, labels))
    return issues


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def workload_issues(items: list[tuple[Any, SourceDoc]], datasets: set[str],
                    clients: set[str]) -> list[Issue]:
    """Datasets and client locations a workload names must exist.

    Read from the raw YAML data, so workloads that failed type checks are checked too.
    """
    issues = []
    for data, doc in items:
        spec = _as_dict(data.get("spec"))
        name = _as_dict(data.get("metadata")).get("name")
        pre = f"Workload {name!r} " if name else "Workload "
        refs = _as_list(spec.get("datasets"))
        for i, ref in enumerate(refs):
            if isinstance(ref, dict) and isinstance(ref.get("name"), str) and (
                    ref["name"] not in datasets):
                issues.append(_issue(doc, ("spec", "datasets", i, "name"), pre,
                                     f"unknown dataset {ref['name']!r}",
                                     f"define it as a Dataset or use one of: {_known(datasets)}"))
        cl = _as_list(_as_dict(spec.get("latency")).get("clients"))
        for i, ref in enumerate(cl):
            if isinstance(ref, dict) and isinstance(ref.get("location"), str) and (
                    ref["location"] not in clients):
                issues.append(_issue(doc, ("spec", "latency", "clients", i, "location"), pre,
                                     f"unknown client location {ref['location']!r}",
                                     f"define it as a ClientLocation or use one of: "
                                     f"{_known(clients)}"))
    return issues


def check_references(by_kind: Grouped) -> list[Issue]:
    """Every cross-document problem in the grouped documents."""
    sites = {s.name for s, _ in by_kind["Site"]}
    labels = {(k, v) for s, _ in by_kind["Site"] for k, v in s.metadata.labels.items()}
    datasets = {d.name for d, _ in by_kind["Dataset"]}
    clients = {c.name for c, _ in by_kind["ClientLocation"]}
    return [
        *_duplicates(by_kind),
        *_site_issues(by_kind["Site"], sites),
        *_dataset_issues(by_kind["Dataset"], sites),
        *_client_issues(by_kind["ClientLocation"], sites),
        *workload_issues([(doc.data, doc) for _, doc in by_kind["Workload"]]
                         + by_kind.get("invalid-Workload", []), datasets, clients),
        *_policy_issues(by_kind["Policy"], sites, labels),
    ]
