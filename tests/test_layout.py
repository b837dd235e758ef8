"""The tests' own layout: shared builders and fixtures live in tests/support/, so no test module
(``test_*.py``, ``bench_*.py``) and no helper imports another test module or any conftest, and
only tests/conftest.py registers plugins (``pytest_plugins``)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SUPPORT = "tests.support"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _test_module_stems() -> set[str]:
    return {p.stem for p in TESTS.rglob("*.py") if p.name.startswith(("test_", "bench_"))}


def _imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module an import statement may load, relative ones resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # `from tests.bus import conftest` loads a module by its name
                yield node.lineno, f"{target}.{alias.name}" if target else alias.name


def layout_problems(source: str, module: str, is_package: bool = False,
                    test_stems: set[str] | None = None) -> list[str]:
    """What is wrong with the imports of ``source`` (the text of module ``module``)."""
    stems = _test_module_stems() if test_stems is None else test_stems
    tree = ast.parse(source)
    problems = []
    for line, name in _imported(tree, module, is_package):
        parts = name.split(".")
        if parts[0] == "tests" and len(parts) > 1 and parts[1] != "support":
            problems.append(f"line {line}: imports {name} (helpers belong in {SUPPORT}.*)")
        elif parts[0] == "conftest" or parts[0] in stems:  # a test directory put on sys.path
            problems.append(f"line {line}: imports {name} (a conftest or a test module)")
    if module != "tests.conftest":
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in targets):
                    problems.append(f"line {node.lineno}: pytest_plugins outside tests/conftest.py")
    return sorted(set(problems))


def test_no_test_module_imports_another_test_module_or_a_conftest() -> None:
    stems = _test_module_stems()
    found = {}
    for path in sorted(TESTS.rglob("*.py")):
        problems = layout_problems(path.read_text(), _module_name(path), path.name == "__init__.py", stems)
        if problems:
            found[str(path.relative_to(ROOT))] = problems
    assert found == {}


def test_every_test_directory_is_a_package() -> None:
    """So each test module and conftest has one importable name (tests.<package>.<module>)."""
    missing = sorted(str(d.relative_to(ROOT)) for d in {p.parent for p in TESTS.rglob("*.py")}
                     if not (d / "__init__.py").exists())
    assert missing == []


@pytest.mark.parametrize(("source", "module"), [
    ("from tests.bus.test_emission import wait_outbox", "tests.bus.test_consumers"),
    ("from tests.ticketing.conftest import buy", "tests.bus.test_emission"),
    ("from tests.conftest import ADMIN_KEY", "tests.fuzz.test_schemathesis"),
    ("import tests.conftest", "tests.fuzz.test_schemathesis"),
    ("from tests.ticketing import conftest", "tests.bus.test_emission"),
    ("from tests import up_process", "tests.foundation.test_cli_up"),
    ("from .conftest import Recorder", "tests.bus.test_relay_consumer"),
    ("from . import test_emission", "tests.bus.test_consumers"),
    ("from ..ticketing.test_purchase import helper", "tests.bus.test_consumers"),
    ("from conftest import envelope", "tests.notifications.test_failures"),
    ("from test_emission import wait_outbox", "tests.bus.test_consumers"),
    ("pytest_plugins = ['tests.support.shop']", "tests.bus.conftest"),
])
def test_the_layout_check_catches(source: str, module: str) -> None:
    assert layout_problems(source, module, test_stems={"test_emission"}) != []


@pytest.mark.parametrize(("source", "module"), [
    ("from tests.support.events import buy, hold_seats", "tests.bus.test_consumers"),
    ("import tests.support.rooms", "tests.waitingroom.test_http"),
    ("from tests import support", "tests.bus.test_consumers"),
    ("from .events import seat_map", "tests.support.shop"),
    ("from aiohttp.test_utils import TestServer", "tests.support.services"),
    ("pytest_plugins = ['tests.support.shop']", "tests.conftest"),
])
def test_the_layout_check_allows(source: str, module: str) -> None:
    assert layout_problems(source, module, test_stems={"test_emission"}) == []
