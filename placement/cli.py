"""Command line: place workloads, validate policy bundles, write the JSON Schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from placement.errors import ConfigError, PlacementError

if TYPE_CHECKING:
    pass

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Decide, explain and record where AI workloads run.")
policy_app = typer.Typer(no_args_is_help=True, help="Work with policy bundles.")
app.add_typer(policy_app, name="policy")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Directory of YAML documents.")]


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


@app.command()
def place(
    workloads: Annotated[list[Path], typer.Argument(help="Workload YAML files or directories.")],
    config: ConfigOpt = Path("policies/examples"),
    as_json: Annotated[bool, typer.Option("--json", help="Print decisions as JSON.")] = False,
    reservations: Annotated[Path | None, typer.Option(
        help="YAML list of reservations (site, gpu_type, count, remaining_hours).")] = None,
) -> None:
    """Decide where each workload runs and explain why every other site lost."""
    from placement.loader import load_bundle
    from placement.service import decide_all, load_reservations

    try:
        bundle = load_bundle(config, workloads)
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
    from placement.render import print_decision

    for decision in decisions:
        print_decision(decision)


def _workload_names(paths: list[Path]) -> set[str]:
    from placement.loader import parse_documents

    by_kind, _ = parse_documents(paths)
    return {w.name for w, _ in by_kind["Workload"]}


@policy_app.command("validate")
def validate(config: Annotated[Path, typer.Argument(help="Directory of YAML documents.")]) -> None:
    """Exit 0 when the bundle is valid; otherwise print every problem and exit 1."""
    from placement.loader import load_bundle

    try:
        bundle = load_bundle(config)
    except ConfigError as exc:
        _fail(exc)
        return
    inv = bundle.inventory
    typer.echo(f"ok: {len(inv.sites)} sites, {len(inv.datasets)} datasets, "
               f"{len(inv.client_locations)} client locations, "
               f"{len(bundle.policy.spec.rules)} rules, {len(bundle.workloads)} workloads; "
               f"policy version {bundle.policy_version}")


@app.command()
def schema(out: Annotated[Path, typer.Option(help="Directory to write into.")] = Path(
        "policies/schema")) -> None:
    """Write the JSON Schema of every document kind (for editors and CI)."""
    from placement.schema import write_schemas

    for path in write_schemas(out):
        typer.echo(f"wrote {path}")


def main() -> None:
    """Entry point of the `placement` command."""
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
