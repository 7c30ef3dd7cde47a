"""Command line: place workloads, validate bundles, serve the API, manage tokens and schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from placement.cli.admin import db_app, token_app
from placement.cli.common import (
    DbOpt,
    Group,
    JsonOpt,
    LogFormatOpt,
    LogLevelOpt,
    configure_logging,
    echo_json,
)
from placement.cli.common import fail as _fail
from placement.cli.common import settings as _settings
from placement.errors import ConfigError, PlacementError
from placement.policy import examples

if TYPE_CHECKING:
    from placement.policy.loader import Bundle

DIST = "hybrid-placement"
app = typer.Typer(cls=Group, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="Decide, explain and record where AI workloads run.")
policy_app = typer.Typer(no_args_is_help=True, help="Work with policy bundles.")
app.add_typer(policy_app, name="policy")
app.add_typer(token_app, name="token")
app.add_typer(db_app, name="db")
triton_app = typer.Typer(no_args_is_help=True, help="Serving with Triton Inference Server.")
app.add_typer(triton_app, name="triton")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Directory of YAML documents.",
                                         callback=examples.resolve)]  # shipped if absent
AccessLogOpt = Annotated[bool | None, typer.Option(
    "--access-log/--no-access-log", help="Log every HTTP request (default: "
    "PLACEMENT_ACCESS_LOG or off).", show_default=False)]


def version() -> str:
    """The installed distribution's version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DIST)
    except PackageNotFoundError:
        return "0+unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"placement {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Decide, explain and record where AI workloads run."""
    configure_logging(log_level, log_format, default_level="warning")


def _versioned(directory: Path, bundle: Bundle) -> Bundle:
    """The bundle carrying the one version rule of a GitOps directory (the commit of a clean
    checkout, else the policy's content hash), as the service and `policy diff` state it."""
    from placement.control.gitops import bundle_version

    bundle.policy_version = bundle_version(directory, bundle)
    return bundle


@app.command()
def place(
    workloads: Annotated[list[Path], typer.Argument(help="Workload YAML files or directories.")],
    config: ConfigOpt = Path("policies/examples"),
    as_json: Annotated[bool, typer.Option("--json", help="Print decisions as JSON.")] = False,
    reservations: Annotated[Path | None, typer.Option(
        help="YAML list of reservations (site, gpu_type, count, remaining_hours).")] = None,
) -> None:
    """Decide where each workload runs and explain why every other site lost."""
    from placement.engine.offline import decide_all, load_reservations
    from placement.policy.loader import load_bundle

    try:
        bundle = _versioned(config, load_bundle(config, workloads))
        held = load_reservations(reservations) if reservations else []
        names = _workload_names(workloads)
        chosen = [w for w in bundle.workloads if w.name in names]
        if not chosen:
            shown = ", ".join(str(p) for p in workloads)
            raise PlacementError(f"no Workload documents found in {shown}; pass files or "
                                 "directories holding 'kind: Workload' YAML")
        decisions = decide_all(bundle, chosen, held)
    except (ConfigError, PlacementError) as exc:
        _fail(exc)
        return
    if as_json:
        payload = [d.model_dump(mode="json") for d in decisions]
        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return
    from placement.cli.render import print_decision

    for decision in decisions:
        print_decision(decision)


def _workload_names(paths: list[Path]) -> set[str]:
    from placement.policy.loader import parse_documents

    by_kind, _ = parse_documents(paths)
    return {w.name for w, _ in by_kind["Workload"]}


@policy_app.command("validate")
def validate(config: Annotated[Path, typer.Argument(help="Directory of YAML documents.")],
             as_json: Annotated[bool, typer.Option("--json", help="Print {valid, counts, "
                                                   "policy_version} or {valid, problems} as "
                                                   "JSON.")] = False) -> None:
    """Exit 0 when the bundle is valid; otherwise print every problem and exit 1."""
    from dataclasses import asdict

    from placement.policy.loader import load_bundle

    try:
        bundle = _versioned(config, load_bundle(config))
    except ConfigError as exc:
        if as_json:
            echo_json({"valid": False, "problems": [asdict(i) for i in exc.issues]})
            raise typer.Exit(1) from None
        _fail(exc)
        return
    inv = bundle.inventory
    if as_json:
        echo_json({"valid": True, "sites": len(inv.sites), "datasets": len(inv.datasets),
                   "client_locations": len(inv.client_locations),
                   "rules": len(bundle.policy.spec.rules), "workloads": len(bundle.workloads),
                   "policy_version": bundle.policy_version})
        return
    typer.echo(f"ok: {len(inv.sites)} sites, {len(inv.datasets)} datasets, "
               f"{len(inv.client_locations)} client locations, "
               f"{len(bundle.policy.spec.rules)} rules, {len(bundle.workloads)} workloads; "
               f"policy version {bundle.policy_version}")


@policy_app.command("diff")
def policy_diff(
    base: Annotated[Path, typer.Argument(help="Bundle directory before the change.")],
    head: Annotated[Path, typer.Argument(help="Bundle directory after the change.")],
    workloads: Annotated[list[Path] | None, typer.Option(
        "--workloads", "-w", help="Workload YAML files or directories to decide.")] = None,
    from_store: Annotated[str | None, typer.Option(
        "--from-store", help="Also decide the live workloads of this store (database URL).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="markdown or json.")] = "markdown",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Decide workloads under both bundles and report what moves, why, and the $/egress/SLO
    deltas. Exit 0: nothing moves; 3: placements change; 1: invalid input."""
    from placement.control.gitops import bundle_version
    from placement.policy.loader import load_bundle, parse_documents
    from placement.simulate import policydiff

    fmt = "json" if as_json else fmt
    if fmt not in ("markdown", "json"):
        _fail(PlacementError(f"--format must be markdown or json, not {fmt!r}"))
    if not workloads and not from_store:
        _fail(PlacementError("nothing to decide: pass --workloads FILE_OR_DIR and/or "
                             "--from-store DATABASE_URL"))
    try:
        bundles = [load_bundle(base), load_bundle(head)]
        chosen: list[Any] = []
        if workloads:
            by_kind, issues = parse_documents(workloads)
            if issues:
                raise ConfigError(issues)
            chosen = [w for w, _ in by_kind["Workload"]]
            if not chosen:
                raise PlacementError("no Workload documents in " +
                                     ", ".join(str(p) for p in workloads))
        held = None
        if from_store:
            live, held = policydiff.from_store(from_store)
            chosen += live
        report = policydiff.diff(bundles[0], bundles[1], chosen, held)
        report.base_version = bundle_version(base, bundles[0])
        report.head_version = bundle_version(head, bundles[1])
    except (ConfigError, PlacementError) as exc:
        _fail(exc)
        return
    if fmt == "json":
        typer.echo(json.dumps(policydiff.to_json(report), indent=2))
    else:
        typer.echo(policydiff.to_markdown(report), nl=False)
    raise typer.Exit(3 if report.moved else 0)


@triton_app.command("render")
def triton_render(
    workload: Annotated[Path, typer.Argument(help="Workload YAML file (with `serving`).")],
    out: Annotated[Path, typer.Option(help="Directory to write into.")],
    config: ConfigOpt = Path("policies/examples"),
    site: Annotated[str | None, typer.Option(help="Site to render for (default: where the "
                                             "engine places the workload).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the model repository layout (config.pbtxt, version folder) to publish next to
    the model's files, and the manifests the service applies to the site's cluster."""
    import uuid

    import yaml

    from placement.actuators.triton.manifests import ManifestError, render
    from placement.actuators.triton.render import ServingSpecError, write_repository
    from placement.engine.offline import engine_for
    from placement.policy.loader import load_bundle

    try:
        bundle = load_bundle(config, [workload])
        names = _workload_names([workload])
        found = [w for w in bundle.workloads if w.name in names]
        if not found:
            raise PlacementError(f"no Workload document in {workload}")
        wl = found[0]
        if site is None:
            decision = engine_for(bundle).place(wl)
            if decision.site is None:
                raise PlacementError(f"{wl.name} is not placed now ({decision.action}); "
                                     "pass --site to render for a site anyway")
            site = decision.site
        manifests = render(wl, uuid.uuid5(uuid.NAMESPACE_DNS, wl.name),
                           bundle.inventory.site(site))
        version_dir = write_repository(wl, out / "repository")
    except KeyError:
        _fail(PlacementError(f"site {site!r} is not in the inventory under {config}"))
        return
    except (ConfigError, PlacementError, ServingSpecError, ManifestError) as exc:
        _fail(exc)
        return
    (out / "manifests.yaml").write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    if as_json:
        echo_json({"site": site, "manifests": str(out / "manifests.yaml"),
                   "kinds": [m.get("kind") for m in manifests],
                   "config": str(version_dir.parent / "config.pbtxt"),
                   "model_dir": str(version_dir)})
        return
    typer.echo(f"site {site}: {len(manifests)} manifests in {out / 'manifests.yaml'}; model "
               f"configuration in {version_dir.parent / 'config.pbtxt'} (put the model's files "
               f"in {version_dir})")


@app.command()
def simulate(
    trace: Annotated[Path, typer.Option(help="Trace CSV (see ../shared/data).")],
    out: Annotated[Path, typer.Option(help="Directory for summary.json and report.html.")],
    config: ConfigOpt = Path("policies/examples"),
    fmt: Annotated[str | None, typer.Option("--format", help="Trace format (default: from "
                                            "the header).")] = None,
    baselines: Annotated[str, typer.Option(help="Comma-separated baselines, or all.")] = "all",
    seed: Annotated[int, typer.Option(help="Seed of every assigned attribute and draw.")] = 0,
    limit: Annotated[int | None, typer.Option(help="Only the first N workloads.")] = None,
    skip: Annotated[int, typer.Option(help="Leave out the first N workloads (judge a later "
                                      "window of the trace).")] = 0,
    load: Annotated[float, typer.Option(help="Scale arrivals so offered GPU-hours per hour are "
                                        "this share of the on-prem GPUs; 0 keeps the trace's "
                                        "timing.")] = 0.8,
    window_h: Annotated[float, typer.Option(help="Service sizing window, hours.")] = 0.25,
    bound: Annotated[bool, typer.Option(help="Compute the MILP lower bound.")] = True,
    bound_time_s: Annotated[float, typer.Option(help="MILP time limit, seconds.")] = 60.0,
    seeds: Annotated[int, typer.Option(help="Run this many seeds (--seed, --seed + 1, ...) in "
                                       "a process pool; report means and 95% intervals.")] = 1,
    cluster: Annotated[str | None, typer.Option(help="Run the seeds on this Dask scheduler "
                                                "(tcp://host:8786); needs the [sim] extra and "
                                                "the trace and config readable there.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json to stdout instead "
                                          "of the table.")] = False,
) -> None:
    """Replay a trace through the policy and the baselines; compare, at equal work, avoidable
    spend, cost, egress, deadlines and SLOs against each other and a lower bound."""
    from rich.console import Console
    from rich.progress import Progress

    from placement.simulate.run import Options
    from placement.simulate.run import simulate as run_simulation
    from placement.simulate.traces import TraceError

    if load < 0 or window_h <= 0 or (limit is not None and limit < 1) or seeds < 1 \
            or skip < 0:
        _fail(PlacementError("--load must be >= 0, --window-h > 0, --limit >= 1, "
                             "--skip >= 0 and --seeds >= 1"))
    opts = Options(trace=trace, config=config, out=out, fmt=fmt,
                   baselines=tuple(b.strip() for b in baselines.split(",") if b.strip()),
                   seed=seed, limit=limit, skip=skip, load=load or None, window_h=window_h,
                   bound=bound, bound_time_s=bound_time_s, seeds=seeds, cluster=cluster)
    console = Console(stderr=True)
    try:
        with Progress(console=console, transient=True) as bar:
            tasks: dict[str, Any] = {}

            def step(policy: str, done: int, total: int) -> None:
                if policy not in tasks:
                    what = policy if policy.startswith("MILP") else f"replaying ({policy})"
                    tasks[policy] = bar.add_task(what, total=total)
                bar.advance(tasks[policy], done)

            summary = run_simulation(opts, step)
    except (ConfigError, PlacementError, TraceError, ValueError) as exc:
        _fail(exc)
        return
    from placement.simulate.report import rich_table

    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        for line in summary.get("headline", []):
            typer.echo(line)
        Console().print(rich_table(summary))
    problems = summary["inputs"]["trace_problems"]
    if problems:
        for line in summary["inputs"]["trace_problem_lines"][:5]:
            typer.echo(f"warning: {line}", err=True)
        typer.echo(f"{problems} trace rows could not be read and were left out (the first "
                   f"{len(summary['inputs']['trace_problem_lines'])} are in summary.json)",
                   err=True)
    typer.echo(f"wrote {out / 'summary.json'} and {out / 'report.html'}", err=as_json)


def _wrote(paths: list[Path], as_json: bool) -> None:
    if as_json:
        echo_json({"wrote": [str(p) for p in paths]})
        return
    for path in paths:
        typer.echo(f"wrote {path}")


@app.command()
def crds(out: Annotated[Path, typer.Option(help="Directory to write into.")] = Path(
        "helm/placement/crds"), as_json: JsonOpt = False) -> None:
    """Write the Workload and Site CustomResourceDefinitions, generated from the models."""
    from placement.policy.crds import definitions, render

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in definitions().items():
        (out / name).write_text(render(doc), encoding="utf-8")
        written.append(out / name)
    _wrote(written, as_json)


@app.command()
def schema(out: Annotated[Path, typer.Option(help="Directory to write into.")] = Path(
        "policies/schema"), as_json: JsonOpt = False) -> None:
    """Write the JSON Schema of every document kind (for editors and CI)."""
    from placement.policy.schema import write_schemas

    _wrote(list(write_schemas(out)), as_json)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create (or an empty one).")],
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty directory, "
                                        "replacing files of the same names.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a starter GitOps directory (sites, datasets, client locations, a policy and an
    example workload) to edit for your own sites; it passes `placement policy validate`."""
    from placement.cli.starter import FILES

    if directory.exists() and not directory.is_dir():
        _fail(PlacementError(f"{directory} is a file; name a directory"))
    if directory.is_dir() and any(directory.iterdir()) and not force:
        _fail(PlacementError(f"{directory} is not empty; pick a new directory, or pass --force "
                             "to write the starter files into it"))
    written = []
    for name, text in FILES.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if as_json:
        echo_json({"directory": str(directory), "wrote": [str(p) for p in written]})
        return
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"next: edit the files, then `placement policy validate {directory}`")


@app.command("settings")
def show_settings(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the table of every "
                                           "PLACEMENT_* variable (the README's).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the values in effect as JSON "
                                          "(secrets masked).")] = False,
) -> None:
    """Print the service settings in effect here (PLACEMENT_* variables; secrets masked)."""
    from pydantic import SecretStr

    from placement.service.settings import PREFIX, markdown_table

    if markdown:
        typer.echo(markdown_table(), nl=False)
        return
    values = {f"{PREFIX}{k.upper()}": ("**********" if isinstance(v, SecretStr) else v)
              for k, v in _settings().model_dump(mode="json").items()}
    if as_json:
        echo_json(values)
        return
    width = max(map(len, values))
    for key, value in values.items():
        shown = "unset" if value is None else str(value).lower() if isinstance(value, bool) \
            else str(value)
        typer.echo(f"{key.ljust(width)}  {shown}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind.")] = None,
    database_url: DbOpt = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="GitOps directory.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    prometheus_url: Annotated[str | None, typer.Option(
        help="Prometheus for live signals (sites' `signals` queries).")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(
        help="Kubeconfig with a context per site: serve placed inference and RAG workloads "
        "with Triton.")] = None,
    demo_token: Annotated[bool, typer.Option(help="Create and print an admin token.")] = False,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    access_log: AccessLogOpt = None,
) -> None:
    """Start the REST API (migrates the database, loads the policy, seeds the inventory)."""
    import os
    import tempfile

    import uvicorn

    from placement.control.auth import create_token
    from placement.service.logs import configure
    from placement.service.wiring import build_runtime
    from placement.service.workers import reuse_port_supported, run_workers

    settings = _settings(host=host, port=port, database_url=database_url, config_dir=config,
                         workers=workers, prometheus_url=prometheus_url, kubeconfig=kubeconfig,
                         log_level=log_level, log_format=log_format, access_log=access_log)
    os.environ.update(settings.environment())  # the workers read the same settings
    configure(settings.log_level, settings.log_format, access_log=settings.access_log)
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="placement-metrics-")
    try:
        rt = build_runtime(settings)  # migrate and load once, before workers start
    except (PlacementError, ConfigError) as exc:
        _fail(exc)
        return
    url = f"http://{settings.host}:{settings.port}"
    typer.echo(f"placement API on {url} (database {_safe_url(rt.db.url)}, policy "
               f"{rt.policy_version}); OpenAPI at {url}/docs")
    if demo_token:
        with rt.db.write() as s:
            token = create_token(s, role="admin", team=None, description="demo (make run)")
        typer.echo(f"demo admin token: {token}")
        typer.echo(f"try: curl -H 'Authorization: Bearer {token}' {url}/v1/sites")
    rt.db.dispose()
    if settings.workers > 1 and reuse_port_supported():
        try:
            run_workers(settings.host, settings.port, settings.workers,
                        log_level=settings.log_level)
        except OSError as exc:
            _fail(PlacementError(f"cannot listen on {settings.host}:{settings.port}: {exc}"))
        return
    # Logging is ours (log_config=None): api.main configures it again in each worker.
    uvicorn.run("api.main:app", host=settings.host, port=settings.port,
                workers=settings.workers, log_config=None, log_level=None,
                access_log=settings.access_log)


def _safe_url(url: str) -> str:
    """A database URL without its credentials."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # only for display: show what is after the credentials
        return url.split("@")[-1]


@app.command()
def operator(
    namespace: Annotated[list[str] | None, typer.Option(
        "--namespace", "-n", help="Namespaces to watch (default: the whole cluster).")] = None,
    peering: Annotated[str | None, typer.Option(
        help="Peering name: replicas agree on one that acts.")] = None,
    standalone: Annotated[bool, typer.Option(help="No peering (one replica).")] = False,
    priority: Annotated[int, typer.Option(help="Peering priority; a higher one wins.")] = 0,
    liveness: Annotated[str | None, typer.Option(
        help="Liveness endpoint, e.g. http://0.0.0.0:8081/healthz.")] = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Run the Kubernetes operator (Workload and Site resources)."""
    import kopf

    import placement.operator as handlers  # registers the handlers

    configure_logging(log_level, log_format, json_formatter=handlers.json_formatter())
    kopf.run(clusterwide=not namespace, namespaces=namespace or [],
             standalone=standalone or peering is None, peering_name=peering,
             priority=priority, liveness_endpoint=liveness)


def main() -> None:
    """Entry point of the `placement` command."""
    from placement.tuning import tune_gc

    tune_gc()
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
