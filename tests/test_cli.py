"""Every stage (and the benches) runs as `python -m <package> <command>` and documents its flags."""
import argparse
import importlib
import os
import re
import subprocess

import pytest

from conftest import REPO, run_cli

STAGES = {
    "data": ["synth", "prepare", "faces", "sheet"],
    "extract": ["train", "features", "merge"],
    "ensemble": ["fit", "protocols", "blend"],
    "evaluate": ["report", "seeds", "score", "validate", "submission", "predict", "transfer"],
    "bench": ["data", "faces", "extract", "rules", "scale"],
}


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


# make as a user starts it: under `make test` the inherited MAKELEVEL makes a nested make print its directory
OUTSIDE_MAKE = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}


@pytest.mark.parametrize("seeds", ["abc", "-1", "2 3", "0", ""])
def test_make_refuses_a_seeds_that_is_not_a_whole_number(seeds):
    res = subprocess.run(["make", "-n", "report", f"SEEDS={seeds}"], cwd=REPO, capture_output=True, text=True,
                         env=OUTSIDE_MAKE)
    assert res.returncode != 0 and f"SEEDS={seeds}: expected a whole number >= 1" in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and not res.stdout


def test_make_plans_a_seed_run_per_extra_seed():        # -B: planned whatever is already built
    res = subprocess.run(["make", "-n", "-B", "report", "SEEDS=3"], cwd=REPO, capture_output=True, text=True,
                         env=OUTSIDE_MAKE)
    assert res.returncode == 0, res.stderr
    assert "--seed-offset 1" in res.stdout and "--seed-offset 2" in res.stdout and "--seed-offset 3" not in res.stdout
