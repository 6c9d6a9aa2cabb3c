"""``python -m evaluate <command>``: Kaggle log-loss reports, offline scoring and submission files."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data.cli import add_config_flag, not_implemented, run
from data.config import load_config
from data.prepare import check_name


def cmd_report(args: argparse.Namespace) -> int:
    from .report import run_report

    config = load_config(args.config)
    name = check_name(args.name)
    out = run_report(config, Path(args.predictions) / name, Path(args.out) / name, name)
    print(f"wrote {out}/report.md, leaderboard.csv, metrics.json and figures")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .score import format_table, score_files

    config = load_config(args.config)
    results, problems = score_files(args.submissions, args.labels, args.column, args.dedupe,
                                    int(config["evaluate"]["bootstrap"]), int(config["seed"]))
    problems.warn()
    print(json.dumps(results, indent=1) if args.json else format_table(results))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .score import validate

    pred, sample = validate(args.submission, args.sample)
    print(f"{args.submission}: valid: {len(sample)} videos, header filename,label, values in "
          f"[{pred.values.min():.4g}, {pred.values.max():.4g}]")
    return 0


def cmd_submission(args: argparse.Namespace) -> int:
    from .submission import write_submission

    config = load_config(args.config)
    name = check_name(args.name)
    out = Path(args.out) if args.out else Path("reports") / name / "submission.csv"
    method, rows, which = write_submission(config, Path(args.predictions) / name, out, args.method, args.sample)
    print(f"wrote {out}: {rows} videos ({which}), method {method}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluate",
                                     description="Evaluation stage: log-loss reports, offline scoring, submissions.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("report", help="write the log-loss leaderboard, metrics and plots",
                       description="Leaderboard of every method with family-grouped bootstrap intervals, on the "
                                   "test split and on the blend split's out-of-fold predictions; figures; writes "
                                   "reports/NAME/report.md, leaderboard.csv, metrics.json.")
    p.add_argument("--name", default="synthetic", help="dataset name (default: synthetic)")
    p.add_argument("--predictions", default="data/predictions", help="predictions folder (default: data/predictions)")
    p.add_argument("--out", default="reports", help="reports folder; the report goes to OUT/NAME (default: reports)")
    add_config_flag(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("score", help="score Kaggle-format submission files against labels",
                       description="An offline leaderboard: each file's log-loss (with a family-grouped bootstrap "
                                   "95%% interval), balanced log-loss, AUC, AP, EER, Brier, ECE and hard-label metrics.")
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="files with filename and a P(FAKE) column")
    p.add_argument("--labels", required=True, metavar="PATH",
                   help="DFDC metadata.json, or a CSV filename,label[,original] (label 0/1 or REAL/FAKE)")
    p.add_argument("--column", default=None, metavar="NAME",
                   help="the prediction column of files not in Kaggle format (default: label)")
    p.add_argument("--dedupe", choices=["error", "mean"], default="error",
                   help="repeated video rows: stop with an error (default) or average them")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object keyed by file path")
    add_config_flag(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("validate", help="check a submission file against a sample submission",
                       description="The checks Kaggle runs, without labels: header filename,label, the sample's "
                                   "video names exactly once each, values in [0, 1], no NaN. Exit 0 only if valid.")
    p.add_argument("submission", help="the submission CSV to check")
    p.add_argument("--sample", required=True, metavar="PATH", help="the competition's sample_submission.csv")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("submission", help="write submission.csv with the chosen method",
                       description="Writes filename,label for the unlabelled videos (or the test split when every "
                                   "video is labelled) with the method chosen on the blend split's OOF log-loss. "
                                   "Videos without a face get the blend split's FAKE share (the prior).")
    p.add_argument("--name", default="synthetic", help="dataset name (default: synthetic)")
    p.add_argument("--predictions", default="data/predictions", help="predictions folder (default: data/predictions)")
    p.add_argument("--method", default=None,
                   help="method column to submit (default: the best on the blend split's OOF log-loss)")
    p.add_argument("--sample", default=None, metavar="PATH",
                   help="a sample_submission.csv: same videos, in its row order")
    p.add_argument("--out", default=None, help="output CSV (default: reports/NAME/submission.csv)")
    add_config_flag(p)
    p.set_defaults(func=cmd_submission)

    p = sub.add_parser("predict", help="print the fake probability of videos or face folders (not implemented yet)",
                       description="Print the fake probability of videos or face folders.")
    p.add_argument("--name", default="synthetic", help="dataset name (default: synthetic)")
    add_config_flag(p)
    p.set_defaults(func=not_implemented("evaluate", "predict", 6))
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
