"""requirements.txt, requirements-dev.txt and pyproject's extras hold exactly what the code
and the tests import."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL = {"utils", "bench", "tests", "budsam_train_multi", "budsam_infer", "budsam_eval"}
# Where the distribution's name is not the imported module's (most specific first).
DISTRIBUTION_OF = {
    "torch.utils.tensorboard": "tensorboard",
    "cv2": "opencv-python-headless",
    "skimage": "scikit-image",
    "PIL": "pillow",
    "segment_anything": "segment-anything",
    "ai_edge_litert": "ai-edge-litert",
}
IMPORTING_CALLS = {"import_module", "importorskip"}  # their first argument is imported
# Imported on our behalf by a dependency that does not declare it.
UNDECLARED_BY_A_DEPENDENCY = {"torchvision": "segment-anything"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution(module: str) -> str | None:
    """The distribution that provides ``module``; None for the standard library and ours."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in LOCAL or top == "__future__":
        return None
    for prefix, distribution in DISTRIBUTION_OF.items():
        if module == prefix or module.startswith(prefix + "."):
            return _canonical(distribution)
    return _canonical(top)


def _imported_modules(tree: ast.AST) -> set[str]:
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            first = node.args[0]
            if name in IMPORTING_CALLS and isinstance(first, ast.Constant):
                modules.add(str(first.value))
    return modules


def _distributions(files: list[Path]) -> set[str]:
    found = set()
    for path in files:
        for module in _imported_modules(ast.parse(path.read_text(), str(path))):
            if (distribution := _distribution(module)) is not None:
                found.add(distribution)
    return found


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_canonical(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]))
    return names


def _optional_names() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    return {_canonical(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for e in extras for r in e}


def _code_files() -> list[Path]:
    return [
        *ROOT.glob("budsam_*.py"),
        *(ROOT / "utils").rglob("*.py"),
        *(ROOT / "bench").rglob("*.py"),
    ]


def test_requirements_txt_and_the_extras_hold_exactly_what_the_code_imports():
    imported = _distributions(_code_files())
    assert set(UNDECLARED_BY_A_DEPENDENCY.values()) <= imported
    imported |= set(UNDECLARED_BY_A_DEPENDENCY)
    required, optional = _requirement_names(ROOT / "requirements.txt"), _optional_names()
    assert {"torch", "segment-anything", "scikit-image", "librosa"} <= required
    assert not required & optional, "a package is both required and optional"
    assert imported - optional == required, (
        f"imported but not required: {sorted(imported - optional - required)}; "
        f"required but never imported: {sorted(required - imported)}"
    )
    assert optional <= imported, f"extras never imported: {sorted(optional - imported)}"


def test_optional_packages_are_imported_only_where_they_are_used():
    """An extra imported at a module's top level would break every install without it."""
    optional = _optional_names()
    for path in _code_files():
        tree = ast.parse(path.read_text(), str(path))
        top_level = ast.Module(
            body=[n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)],
            type_ignores=[],
        )
        found = {_distribution(module) for module in _imported_modules(top_level)}
        assert not found & optional, f"{path.name} imports {sorted(found & optional)} at its top"


def test_requirements_dev_holds_exactly_what_the_tests_add():
    imported = _distributions(list((ROOT / "tests").rglob("*.py")))
    required = _requirement_names(ROOT / "requirements.txt")
    dev = _requirement_names(ROOT / "requirements-dev.txt")
    assert {"pytest", "monai"} <= dev
    assert imported - required == dev, (
        f"imported by tests, in neither file: {sorted(imported - required - dev)}; "
        f"in requirements-dev.txt but not imported by tests: {sorted(dev - imported)}"
    )


def test_the_dependency_scan_sees_every_kind_of_import():
    tree = ast.parse(
        "import cv2\nfrom skimage.transform import resize\nimport torch.utils.tensorboard as tb\n"
        "import os\nfrom utils.audio import io\nfrom . import local\n"
        "m = importlib.import_module('ai_edge_litert.interpreter')\n"
        "monai = pytest.importorskip('monai', reason='x')\n"
    )
    found = {d for m in _imported_modules(tree) if (d := _distribution(m)) is not None}
    assert found == {
        "opencv-python-headless", "scikit-image", "tensorboard", "ai-edge-litert", "monai"
    }  # fmt: skip
