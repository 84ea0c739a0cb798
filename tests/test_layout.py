"""The layout rule of utils/: a lower layer never imports a higher one."""

from __future__ import annotations

import ast

from tests.conftest import REPO_ROOT

# Layer of each utils subpackage (docs/layout.md); equal layers side by
# side never import each other.
LAYERS = {
    "common": 0,
    "audio": 1,
    "data": 2,
    "model": 3,
    "scoring": 4,
    "train": 5,
    "inference": 5,
    "evaluation": 6,
}
MAX_MODULE_LINES = 400


def _utils_imports(path) -> list[tuple[int, str]]:
    """``(line, subpackage)`` of every ``utils.<subpackage>`` a module imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = (
                [node.module] if node.module != "utils" else [f"utils.{a.name}" for a in node.names]
            )
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found += [(node.lineno, n.split(".")[1]) for n in names if n.startswith("utils.")]
    return found


def test_every_utils_module_sits_in_a_known_layer():
    packages = {
        p.name for p in (REPO_ROOT / "utils").iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    assert packages == set(LAYERS)
    # utils/api.py, the Python API, sits above every layer.
    assert sorted(p.name for p in (REPO_ROOT / "utils").glob("*.py")) == ["__init__.py", "api.py"]
    assert not (REPO_ROOT / "segment_anything").exists()  # SAM comes from its PyPI package


def test_no_layer_imports_a_higher_or_a_sibling_layer():
    upward = []
    for path in sorted((REPO_ROOT / "utils").rglob("*.py")):
        own = path.relative_to(REPO_ROOT / "utils").parts[0]
        if own not in LAYERS:
            continue
        for line, imported in _utils_imports(path):
            if imported != own and LAYERS[imported] >= LAYERS[own]:
                upward.append(f"{path.relative_to(REPO_ROOT)}:{line} imports utils.{imported}")
    assert not upward, upward


def test_modules_stay_short_enough_to_read():
    long = {
        str(path.relative_to(REPO_ROOT)): n
        for path in [*(REPO_ROOT / "utils").rglob("*.py"), *REPO_ROOT.glob("*.py")]
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long
    assert len((REPO_ROOT / "budsam_train_multi.py").read_text().splitlines()) <= 300
