"""The wiring stays as docs/architecture.md draws it: no import cycle, one direction, no patches.

Plain tests of the source tree and of a fresh interpreter; nothing here starts Redis.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jobq", "workers", "producers", "ops")
# jobq (the public API, and its pytest plugin jobq.testing, which starts ops processes) and ops
# may import producers and workers; producers may import workers;
# workers imports neither. Nothing of jobq's own imports the public facade.
ALLOWED = {
    "jobq": {"jobq", "ops", "producers", "workers"},
    "ops": {"ops", "producers", "workers"},
    "producers": {"producers", "workers"},
    "workers": {"workers"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if ".venv" not in path.parts
    }


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Every project module ``path`` imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from a.b import c" imports a.b, and a.b.c too when c is a module.
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known}
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(path, name, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_finds_a_cycle_through_a_function_level_import():
    # The checker itself can fail: a two-module cycle is reported.
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_no_import_cycle_in_workers_producers_or_ops():
    assert cycles(import_graph()) == []


def test_imports_go_one_way_ops_producers_workers():
    wrong = [
        f"{source} imports {target}"
        for source, targets in import_graph().items()
        for target in targets
        if target.split(".")[0] not in ALLOWED[source.split(".")[0]]
    ]
    assert wrong == []


def test_no_feature_module_imports_the_composition_root():
    graph = import_graph()
    importers = sorted(m for m, targets in graph.items() if "workers.app" in targets)
    assert [m for m in importers if m.startswith("workers.")] == []


UNTOUCHED = """
import celery.app.trace, celery.utils.saferepr, redis.utils
original_repr, original_version = celery.app.trace.saferepr, redis.utils.get_lib_version
import producers
from producers.submit import validate
from workers.app import get_app
app = get_app()
validate("io_wait", {"ms": 1})
assert celery.app.trace.saferepr is original_repr, "saferepr patched"
assert redis.utils.get_lib_version is original_version, "get_lib_version patched"
print("untouched")
"""


def fresh_python(code: str, **env: str) -> str:
    """Run ``code`` in a new interpreter with only ``env`` set; return what it printed."""
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


@pytest.mark.integration  # a fresh interpreter; no Redis
def test_a_producer_process_patches_no_library_global():
    # A user's process that imports producers and builds the app gets Celery and redis-py as
    # they are: the speed-ups that replace library functions are worker bootsteps only.
    assert fresh_python(UNTOUCHED, REDIS_URL="redis://127.0.0.1:1/0") == "untouched"


@pytest.mark.integration  # a fresh interpreter; no Redis
def test_importing_producers_builds_no_app_and_reads_no_settings():
    # A bad setting must not break `import producers`: the app is built on first use.
    code = (
        "import producers, ops.cli; from workers.app import get_app;"
        "print(get_app.cache_info().currsize)"
    )
    assert fresh_python(code, JOBQ_IO_CONCURRENCY="lots") == "0"


def test_a_worker_on_libraries_lacking_an_internal_is_refused_in_one_line(monkeypatch):
    from kombu.transport import redis as redis_transport
    from kombu.transport import virtual

    from workers.broker import compat

    assert compat.incompatibility(fast_paths=True) is None  # the pinned versions have them all
    monkeypatch.delattr(virtual.QoS, "can_consume_max_estimate")
    refusal = compat.incompatibility(fast_paths=True)
    assert refusal is not None
    assert "\n" not in refusal
    assert "can_consume_max_estimate" in refusal
    assert "JOBQ_FAST_PATHS=false" in refusal  # the stock paths do not need it
    assert compat.incompatibility(fast_paths=False) is None
    monkeypatch.delattr(redis_transport.Channel, "_brpop_read")
    assert "pinned" in (compat.incompatibility(fast_paths=False) or "")
