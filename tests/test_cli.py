"""Every stage runs as `python -m <stage> <command>`, documents its flags, and says what is not built yet."""
import argparse
import importlib
import re

import pytest

from conftest import run_cli

STAGES = {
    "data": ["synth", "prepare", "sheet", "bench"],
    "extract": ["train", "features", "merge", "bench"],
    "ensemble": ["fit", "blend", "bench"],
    "evaluate": ["report", "score", "validate", "submission", "predict"],
}
PENDING = [("evaluate", "predict")]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_help_lists_its_commands(stage):
    res = run_cli(stage, "--help")
    assert res.returncode == 0
    for command in STAGES[stage]:
        assert re.search(rf"^\s+{command}\s", res.stdout, re.M), command


@pytest.mark.parametrize("stage", STAGES)
def test_every_flag_of_every_command_has_help_text(stage):
    parser = importlib.import_module(f"{stage}.__main__").build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(sub.choices) == sorted(STAGES[stage])
    for command, subparser in sub.choices.items():
        for action in subparser._actions:
            assert action.help and len(action.help) > 10, f"{stage} {command} {action.option_strings}"
        assert run_cli(stage, command, "--help").returncode == 0


@pytest.mark.parametrize("stage, command", PENDING)
def test_stages_not_built_yet_say_so(stage, command):
    res = run_cli(stage, command)
    assert res.returncode == 3
    assert "not implemented yet" in res.stderr and res.stderr.count("\n") == 1
