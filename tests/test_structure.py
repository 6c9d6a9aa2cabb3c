"""The house rules of issue #10: one-way imports between stages, TensorFlow only where a network runs."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

ORDER = ["common", "data", "extract", "ensemble", "evaluate"]     # a package may import only those before it


def imports_of(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ORDER)
def test_no_stage_imports_a_later_stage_or_the_ingest_module(package):
    allowed = set(ORDER[: ORDER.index(package) + 1])
    for path in sorted((REPO / package).glob("*.py")):
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in ORDER:
                assert top in allowed, f"{path.relative_to(REPO)} imports {name}, a later stage"
                assert name != "data.prepare" or package == "data", \
                    f"{path.relative_to(REPO)} imports the ingest module for a helper"


STAGES = ["common", "data", "extract", "ensemble", "apply", "evaluate"]   # apply: where that package exists


@pytest.mark.parametrize("package", [p for p in STAGES if (REPO / p).is_dir()])
def test_no_stage_imports_the_benches(package):
    paths = sorted((REPO / package).rglob("*.py"))
    assert paths, package
    for path in paths:
        for name in imports_of(path):
            assert name.split(".")[0] != "bench", f"{path.relative_to(REPO)} imports {name}: benches stay apart"


def test_the_ensemble_and_the_reports_load_without_tensorflow():
    code = ("import sys, ensemble.fit, ensemble.saved, ensemble.blend, evaluate.report, evaluate.submission, "
            "evaluate.score, ensemble.protocols, evaluate.protocols, extract.cache, ensemble.__main__, evaluate.__main__, data.__main__, extract.__main__, "
            "bench.__main__, bench.scale; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
