"""The package layout: docs/DESIGN.md's module list matches the tree, imports point only down
the layers DESIGN.md lists and have no cycles; size limits; what scripts may import and run."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "flowdeblur"


def _modules_in_tree() -> set[str]:
    """Paths like 'media/atomic.py' of every module (package __init__ and __main__ excluded)."""
    return {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
            if p.name not in ("__init__.py", "__main__.py")}


def _modules_in_design() -> set[str]:
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    section = text.split("## Modules", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([\w/]+\.py)`", section))
    outside = ("tests/", "references/", "benchmarks/")  # files beside the package, not in it
    return {m for m in named if not m.endswith("__init__.py") and not m.startswith(outside)}


def test_design_lists_every_module_and_nothing_else():
    tree, design = _modules_in_tree(), _modules_in_design()
    assert not tree - design, f"modules missing from docs/DESIGN.md: {sorted(tree - design)}"
    assert not design - tree, f"docs/DESIGN.md lists modules that do not exist: " \
                              f"{sorted(design - tree)}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _from_target(node: ast.ImportFrom, package: list[str]) -> str:
    """The dotted module a ``from X import ...`` in ``package`` names, relative ones resolved."""
    if not node.level:
        return node.module or ""
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _top_level_imports(path: Path) -> set[str]:
    """Package modules imported at module level (not inside functions) by ``path``."""
    tree = ast.parse(path.read_text())
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            target = _from_target(node, package)
            if target.startswith("flowdeblur"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("flowdeblur"))
    return found


def test_no_import_cycles_between_modules():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: {t for t in _top_level_imports(p) if t in files and t != name}
             for name, p in files.items()}
    # A package's __init__ may re-export its own submodules; that is not a cycle of code.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")
                       and not name.startswith(t + ".")}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


# ----------------------------------------------------------------------------- layers

# docs/DESIGN.md, "Dependencies point downwards": the tier of each part of the package (a
# subpackage, or a module at the top level). A module may import its own part and the parts of
# lower tiers; within a tier only where the paragraph says so (tiers in SAME_TIER_ALLOWED).
# Imports inside functions count: a dependency is one wherever it is written.
TIERS = {
    # "ops and models import nothing else of the package" (so they may import each other)
    "ops": 0, "models": 0,
    # Not placed by the paragraph. The code: they import nothing of the package and serve
    # every layer above ops and models (which, as DESIGN.md says, import neither).
    "errors": 1, "viz": 1,
    # "data, media and runtime build on them"
    "data": 2, "media": 2, "runtime": 2,
    # Not placed by the paragraph. The code: weights/ builds on media (atomic files), models
    # and runtime (storage dtypes), and inference and training load weights.
    "weights": 3,
    # "inference, training and evaluation on those"
    "inference": 4, "training": 4, "evaluation": 4,
    # "apps and cli on everything"; so do the public API (__init__.py) and `python -m`
    "apps": 5, "cli": 5, "__init__": 5, "__main__": 5,
}
SAME_TIER_ALLOWED = {0, 5}
# Imports the rule above does not allow: (importing module, imported module or package).
# This list must only shrink: remove an entry when its import goes, never add one without
# saying so in docs/DESIGN.md's paragraph.
LAYER_EXCEPTIONS = {
    # Stated in DESIGN.md: a dataset is scored with the self-ensemble that `deblur` offers.
    ("evaluation/protocols.py", "flowdeblur.inference.ensemble"),
    # Stated in DESIGN.md: the held-out set scores weights through deblur_image_pair, as a
    # user would deblur a pair.
    ("evaluation/heldout.py", "flowdeblur.inference.deblur"),
    # Stated in DESIGN.md: data reads and writes its files with media, a part of the same
    # tier: dataset frames, the user's photo folders, high-fps footage and the blurred frames
    # made from it.
    ("data/readers.py", "flowdeblur.media"),
    ("data/textures.py", "flowdeblur.media.images"),
    ("data/blur_synthesis.py", "flowdeblur.media"),
}


def _part(module: str) -> str:
    """The part of the package a dotted module name belongs to: 'flowdeblur.media.atomic' ->
    'media', 'flowdeblur.errors' -> 'errors', 'flowdeblur' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports_anywhere(rel: str, source: str, modules: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every import of the package in the module at ``rel`` (a path like
    'media/atomic.py'), inside functions too; ``module`` is the most specific module of
    ``modules`` the import names ('from ..media import read_image' -> 'flowdeblur.media')."""
    here = ["flowdeblur", *Path(rel).with_suffix("").parts]
    package = here[:-1]
    if here[-1] == "__init__":
        here = package
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            target = _from_target(node, package)
            if target.split(".")[0] == "flowdeblur":
                for alias in node.names:
                    named = f"{target}.{alias.name}"
                    found.add((node.lineno, named if named in modules else target))
        elif isinstance(node, ast.Import):
            found.update((node.lineno, a.name) for a in node.names
                         if a.name.split(".")[0] == "flowdeblur")
    return sorted(found)


def _layer_breaks(sources: dict[str, str]) -> list[tuple[str, int, str]]:
    """(importing module, line, imported module) of every import against TIERS, for
    ``sources`` by path ('data/readers.py': its text)."""
    modules = {_module_name(PACKAGE / rel) for rel in sources}
    breaks = []
    for rel, source in sorted(sources.items()):
        importer = _part(_module_name(PACKAGE / rel))
        for line, module in _imports_anywhere(rel, source, modules):
            imported = _part(module)
            if imported == importer:
                continue
            low, high = TIERS[imported], TIERS[importer]
            if low < high or (low == high and low in SAME_TIER_ALLOWED):
                continue
            breaks.append((rel, line, module))
    return breaks


def _package_sources() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in PACKAGE.rglob("*.py")}


def _exception_for(rel: str, module: str) -> tuple[str, str] | None:
    return next(((r, m) for r, m in LAYER_EXCEPTIONS
                 if r == rel and (module == m or module.startswith(m + "."))), None)


def test_every_part_of_the_package_has_a_tier():
    parts = {_part(_module_name(PACKAGE / rel)) for rel in _package_sources()}
    assert not parts - set(TIERS), f"give these a tier (and a place in docs/DESIGN.md's " \
                                   f"'Dependencies point downwards'): {sorted(parts - set(TIERS))}"


def test_imports_point_only_down_the_layers_of_design_md():
    breaks = _layer_breaks(_package_sources())
    bad = [f"{rel}:{line} imports {module}" for rel, line, module in breaks
           if _exception_for(rel, module) is None]
    assert not bad, f"imports up or across the layers of docs/DESIGN.md: {bad}"
    used = {_exception_for(rel, module) for rel, _, module in breaks}
    assert not LAYER_EXCEPTIONS - used, f"exceptions no longer needed (remove them): " \
                                        f"{sorted(LAYER_EXCEPTIONS - used)}"


def test_the_layer_check_sees_what_it_looks_for():
    breaks = _layer_breaks({
        "ops/warp.py": "from ..errors import UserError\nfrom ..models import layers\n",
        "models/layers.py": "from ..ops import warp\n",
        "data/readers.py": "def f():\n    from flowdeblur.inference import stream\n",
        "inference/deblur.py": "from .. import viz\nfrom ..evaluation.metrics import psnr\n",
        "cli/deblur.py": "from flowdeblur import apps, __version__\nimport flowdeblur.training\n",
        "errors.py": "", "viz.py": "", "apps/__init__.py": "", "training/__init__.py": "",
        "evaluation/metrics.py": "", "inference/__init__.py": "", "__init__.py": "",
    })
    assert breaks == [("data/readers.py", 2, "flowdeblur.inference"),
                      ("inference/deblur.py", 2, "flowdeblur.evaluation.metrics"),
                      ("ops/warp.py", 1, "flowdeblur.errors")]


# ----------------------------------------------------------------------------- tests

TESTS = ROOT / "tests"


def _test_sources() -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text()) for p in sorted(TESTS.glob("*.py"))}


def test_no_test_file_imports_another_test_file_or_the_conftest():
    """Shared test code is a fixture in tests/conftest.py or a helper in tests/helpers.py."""
    bad = {}
    for name, tree in _test_sources().items():
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and not n.level]
        found = [m for m in imported if m.split(".")[0].startswith("test_")
                 or m.split(".")[0] == "conftest"]
        if found:
            bad[name] = found
    assert not bad, f"test files importing a test file or the conftest: {bad}"


def _is_mark_gpu(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "gpu"
            and isinstance(node.value, ast.Attribute) and node.value.attr == "mark"
            and isinstance(node.value.value, ast.Name) and node.value.value.id == "pytest")


def _gpu_marks_not_on_a_test(tree: ast.Module) -> list[int]:
    decorators = {id(d) for n in ast.walk(tree)
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  for d in n.decorator_list}
    return [n.lineno for n in ast.walk(tree) if _is_mark_gpu(n) and id(n) not in decorators]


def test_gpu_tests_say_pytest_mark_gpu_directly():
    """One spelling of the gpu marker: ``@pytest.mark.gpu`` on the test, not an alias
    (``cuda = pytest.mark.gpu``) or a wrapper that applies it."""
    bad = {name: lines for name, tree in _test_sources().items()
           if (lines := _gpu_marks_not_on_a_test(tree))}
    assert not bad, f"pytest.mark.gpu used other than as a test's decorator: {bad}"
    tree = ast.parse("import pytest\ncuda = pytest.mark.gpu\n@pytest.mark.gpu\ndef test_a():\n"
                     "    pass\ndef wrap(t):\n    return pytest.mark.gpu(t)\n")
    assert _gpu_marks_not_on_a_test(tree) == [2, 7]


# ----------------------------------------------------------------------------- size limits

MAX_FUNCTION_LINES = 100  # from `def` to its last line, docstring included
MAX_FILE_LINES = 600


def _long_functions() -> dict[str, int]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found[f"{path.relative_to(PACKAGE).as_posix()}::{node.name}"] = lines
    return found


def test_no_function_in_src_is_over_100_lines():
    over = _long_functions()
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines (split them): {over}"


def test_no_file_in_src_is_over_600_lines():
    over = {p.relative_to(PACKAGE).as_posix(): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not over, f"modules over {MAX_FILE_LINES} lines (split them): {over}"


# ----------------------------------------------------------------------------- scripts

SCRIPT_FOLDERS = (ROOT / "references", ROOT / "benchmarks")
LAUNCHERS = {"run", "Popen", "call", "check_call", "check_output", "system", "run_path",
             "execv", "execve", "execvp", "execl", "execlp", "spawnv", "spawnl"}


def _scripts() -> list[Path]:
    return sorted(p for folder in SCRIPT_FOLDERS for p in folder.glob("*.py"))


def _private_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            module = (node.module or "").split(".")
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if any(p.startswith("_") for p in [*module, a.name])]
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names
                      if any(p.startswith("_") for p in a.name.split("."))]
    return found


def test_scripts_import_no_private_name():
    bad = {p.relative_to(ROOT).as_posix(): found for p in _scripts()
           if (found := _private_imports(ast.parse(p.read_text())))}
    assert not bad, f"scripts importing private names (make them public or local): {bad}"


def _names_a_script(node: ast.AST, script_names: set[str], script_paths: set[str]) -> bool:
    """Whether a subtree holds a script's file name, or a module-level name bound to one."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            if sub.value.endswith(".py") or sub.value in script_names:
                return True
        if isinstance(sub, ast.Name) and sub.id in script_paths:
            return True
    return False


def _launches(tree: ast.Module, script_names: set[str]) -> list[int]:
    # Module-level names bound to a script's path, e.g. SCRIPT = ROOT / "x" / "other.py".
    paths = {t.id for node in tree.body if isinstance(node, ast.Assign)
             and _names_a_script(node.value, script_names, set())
             for t in node.targets if isinstance(t, ast.Name)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in LAUNCHERS and _names_a_script(node, script_names, paths):
                lines.append(node.lineno)
    return lines


def test_no_script_launches_another_script():
    """Scripts call each other's functions; a process of another script hides its errors and
    its arguments from the caller."""
    names = {p.stem for p in _scripts()}
    bad = {p.relative_to(ROOT).as_posix(): lines for p in _scripts()
           if (lines := _launches(ast.parse(p.read_text()), names))}
    assert not bad, f"scripts launching a script as a process (call its functions): {bad}"


def test_the_checks_on_scripts_see_what_they_look_for():
    tree = ast.parse("import subprocess, sys\nfrom recipe_arms import ROOT, _mean\n"
                     "S = ROOT / 'references' / 'real_clips.py'\n"
                     "subprocess.run([sys.executable, str(S), '--json', 'x'])\n"
                     "subprocess.run([sys.executable, 'heldout_synthetic.py'])\n"
                     "subprocess.run(['dpkg', '-x', 'a.deb'])\n")
    assert _private_imports(tree) == ["from recipe_arms import _mean"]
    assert _launches(tree, {"real_clips", "heldout_synthetic"}) == [4, 5]


# ----------------------------------------------------------------------------- documents

MAX_README_LINES = 200  # a user guide; new features add a few lines and a page under docs/
MAX_BENCHMARKS_LINES = 400  # current figures only; history lives in git
RUN_NUMBER = re.compile(r"\bruns?[ -]\d", re.IGNORECASE)  # "run 13", "runs 1-5", "run-6"


def test_readme_is_a_short_guide_without_run_history():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most " \
                                           f"{MAX_README_LINES}: move detail under docs/)"
    runs = [f"{i}: {line.strip()}" for i, line in enumerate(lines, 1) if RUN_NUMBER.search(line)]
    assert not runs, f"README.md names training runs (history goes to docs/TRAINING.md): {runs}"


def test_benchmarks_holds_current_figures_only():
    lines = (ROOT / "docs" / "BENCHMARKS.md").read_text().splitlines()
    assert len(lines) <= MAX_BENCHMARKS_LINES, \
        f"docs/BENCHMARKS.md has {len(lines)} lines (at most {MAX_BENCHMARKS_LINES})"


def test_the_run_number_check_sees_what_it_looks_for():
    assert RUN_NUMBER.search("the weights of runs 1-5") and RUN_NUMBER.search("Run 13:")
    assert RUN_NUMBER.search("CI with the run-6 weights")
    assert not RUN_NUMBER.search("CI runs both") and not RUN_NUMBER.search("torchrun --nproc")
