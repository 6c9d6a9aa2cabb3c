"""The house rules of issues #10 and #19: one-way imports between stages, TensorFlow only where a network runs,
and ``evaluate`` runs a network only through the application layer (``apply``)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

ORDER = ["common", "data", "extract", "ensemble", "apply", "evaluate"]   # a package may import only those before it
# modules that load or run a network (or import TensorFlow to do so): evaluate reaches them only through apply
NETWORK_MODULES = {"tensorflow", "keras", "mtcnn", "common.tensorflow_setup", "data.faces", "extract.backbones",
                   "extract.features", "extract.pipeline", "extract.runtime", "extract.train",
                   "extract.bench"}
# ...except a stage's command-line entry (its __main__), which checks the whole config with every stage's reader:
# they are all visible from the last stage only
WHOLE_CONFIG = "evaluate.settings"


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
            if path.name == "__main__.py" and name == WHOLE_CONFIG:
                continue
            if top in ORDER:
                assert top in allowed, f"{path.relative_to(REPO)} imports {name}, a later stage"
                assert name != "data.prepare" or package == "data", \
                    f"{path.relative_to(REPO)} imports the ingest module for a helper"


def test_evaluate_runs_a_network_only_through_the_application_layer():
    for path in sorted((REPO / "evaluate").glob("*.py")):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert name not in NETWORK_MODULES and top not in NETWORK_MODULES, \
                f"{path.relative_to(REPO)} imports {name}: evaluate runs networks through apply only"


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
            "evaluate.score, ensemble.protocols, evaluate.protocols, extract.cache, extract.card, "
            "data.training_videos, apply.models, apply.dataset, apply.videos, evaluate.transfer, "
            "ensemble.__main__, evaluate.__main__, data.__main__, extract.__main__, bench.__main__, bench.scale; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_no_caller_branches_on_the_executor_type():
    """Callers ask the executor what they need (``in_process``, ``workers``), never which class it is."""
    for package in ORDER:
        for path in sorted((REPO / package).glob("*.py")):
            if path != REPO / "common" / "executor.py":
                text = path.read_text()
                assert "LocalExecutor" not in text and "DaskExecutor" not in text, \
                    f"{path.relative_to(REPO)} names an executor class"


def test_every_command_with_a_config_checks_it_whole():
    """No entry reads a config without every stage's check (``evaluate.settings.load_checked_config``)."""
    for main in sorted(REPO.glob("*/__main__.py")):
        text, package = main.read_text(), main.parent.name
        assert "load_config(" not in text and "load_checked_config(" in text, package


def test_every_stage_reads_its_config_without_tensorflow():
    code = ("import sys, evaluate.settings; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
