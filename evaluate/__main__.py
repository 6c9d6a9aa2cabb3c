"""``python -m evaluate <command>``: Kaggle log-loss reports, offline scoring and submission files."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.cli import (
    FEATURES,
    INTERIM,
    MODELS,
    PREDICTIONS,
    REPORTS,
    add_config_flag,
    add_folder_flag,
    add_name_flag,
    check_name,
    run,
)
from common.executor import add_executor_flags, executor_spec

from .settings import load_checked_config


def cmd_report(args: argparse.Namespace) -> int:
    from .report import run_report

    config = load_checked_config(args.config)
    name = check_name(args.name)
    out = run_report(config, Path(args.predictions) / name, Path(args.out) / name, name)
    print(f"wrote {out}/report.md, leaderboard.csv, metrics.json and figures")
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from .seeds import run_seeds
    from .settings import load_settings

    settings = load_settings(load_checked_config(args.config))
    name = check_name(args.name)
    out = Path(args.out) / name
    report = run_seeds([Path(r) / name for r in args.runs], out, settings.bootstrap, settings.seed)
    print(f"{'method':<28}{'mean':>8}{'std':>8}{'min':>8}{'max':>8}   test log-loss over {len(report['runs'])} seeds")
    for r in report["methods"]:
        print(f"{r['method']:<28}{r['mean']:>8.4f}{r['std']:>8.4f}{r['min']:>8.4f}{r['max']:>8.4f}")
    worse = sum(r["worse_beyond_noise"] for r in report["runs"])
    print(f"submitted vs the best single column chosen on the blend split: worse beyond the bootstrap noise in "
          f"{worse} of {len(report['runs'])} runs; wrote {out}/seeds.md, seeds.json")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .score import format_table, json_safe, score_files
    from .settings import load_settings

    settings = load_settings(load_checked_config(args.config))
    results, problems = score_files(args.submissions, args.labels, args.column, args.dedupe,
                                    settings.bootstrap, settings.seed, settings.ece_bins)
    problems.warn()
    print(json.dumps(json_safe(results), indent=1) if args.json else format_table(results))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .score import validate

    pred, sample = validate(args.submission, args.sample)
    print(f"{args.submission}: valid: {len(sample)} videos, header filename,label, values in "
          f"[{pred.values.min():.4g}, {pred.values.max():.4g}]")
    return 0


def cmd_submission(args: argparse.Namespace) -> int:
    from .submission import write_submission

    config = load_checked_config(args.config)
    name = check_name(args.name)
    out = Path(args.out) if args.out else Path("reports") / name / "submission.csv"
    method, rows, which = write_submission(config, Path(args.predictions) / name, out, args.method, args.sample)
    print(f"wrote {out}: {rows} videos ({which}), method {method}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    config = load_checked_config(args.config)       # before TensorFlow starts: a bad config is refused at once
    from apply.models import load_models
    from apply.videos import predict

    models = load_models(Path(args.models) / check_name(args.name))
    videos, crops, method, problems = predict(args.inputs, config, models, args.method)
    problems.warn()
    if args.json:
        out = {"method": method, "videos": []}
        for row in videos.itertuples():
            item = {"video": row.video, "source": row.source, "status": row.status, "n_crops": row.n_crops,
                    "p_fake": float(row.p_fake)}
            if args.frames:
                mine = crops[crops["video"] == row.video].drop(columns="video")
                item["frames"] = json.loads(mine.to_json(orient="records"))
            out["videos"].append(item)
        print(json.dumps(out, indent=1))
        return 0
    print(f"P(FAKE) by {method} ({Path(args.models) / args.name})")
    for row in videos.itertuples():
        print(f"{row.p_fake:.4f}  {row.video}  ({row.n_crops} face crops; {row.status})  {row.source}")
        if args.frames:
            mine = crops[crops["video"] == row.video].drop(columns="video")
            print("\n".join("    " + line for line in mine.to_string(index=False, float_format="%.4f").splitlines()))
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    executor = executor_spec(args)            # bad flags stop here, before TensorFlow is imported
    from .transfer import run_transfer

    config = load_checked_config(args.config)
    out, metrics, submitted, seconds = run_transfer(config, args.models, args.name, Path(args.interim),
                                                    Path(args.models_dir), Path(args.features),
                                                    Path(args.predictions), Path(args.out), executor)
    methods = metrics["methods"]
    print(f"{args.name} scored by the models of {args.models}: {metrics['n_videos']} labelled videos, nothing fitted "
          f"on {args.name} ({seconds:.1f} s)")
    rules = [m for m in methods if not m.startswith(("blend/", "stack/"))]      # in log-loss order
    roles = {}
    for method, role in ((submitted, "submitted"), (metrics["best_method"], "best here"),
                         (rules[0] if rules else None, "best <backbone>/<rule> here")):
        if method is not None:
            roles.setdefault(method, []).append(role)
    for method, role in roles.items():
        m = methods[method]
        lo, hi = m["log_loss_ci"]
        print(f"{method:<28} log-loss {m['log_loss']:.4f} [{lo:.4f}, {hi:.4f}]  AUC {m['auc']:.3f}  "
              f"({', '.join(role)})")
    print(f"wrote {out}/report.md, leaderboard.csv, metrics.json and figures")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluate",
                                     description="Evaluation stage: log-loss reports, offline scoring, submissions.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("report", help="write the log-loss leaderboard, metrics and plots",
                       description="Leaderboard of every method with family-grouped bootstrap intervals, on the "
                                   "test split and on the blend split's out-of-fold predictions; figures; writes "
                                   "reports/NAME/report.md, leaderboard.csv, metrics.json.")
    add_name_flag(p)
    add_folder_flag(p, "--predictions", PREDICTIONS, "predictions folder")
    add_folder_flag(p, "--out", REPORTS, "reports folder; the report goes to OUT/NAME")
    add_config_flag(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("seeds", help="the spread of the test figures over seeds of the learned stages",
                       description="Compare predictions folders of one dataset made with other seeds of the learned "
                                   "stages (make report SEEDS=N): each method's test log-loss over the seeds, and per "
                                   "seed the submitted method against the best single column chosen on the blend "
                                   "split, with a paired family bootstrap. Writes reports/NAME/seeds.md, seeds.json.")
    add_name_flag(p)
    p.add_argument("--runs", nargs="+", required=True, metavar="FOLDER",
                   help="predictions folders, one per seed (each holds NAME/videos.parquet and fit.json)")
    add_folder_flag(p, "--out", REPORTS, "reports folder; writes OUT/NAME/seeds.md")
    add_config_flag(p)
    p.set_defaults(func=cmd_seeds)

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
    add_name_flag(p)
    add_folder_flag(p, "--predictions", PREDICTIONS, "predictions folder")
    p.add_argument("--method", default=None,
                   help="method column to submit (default: the best on the blend split's OOF log-loss)")
    p.add_argument("--sample", default=None, metavar="PATH",
                   help="a sample_submission.csv: same videos, in its row order")
    p.add_argument("--out", default=None, help="output CSV (default: reports/NAME/submission.csv)")
    add_config_flag(p)
    p.set_defaults(func=cmd_submission)

    p = sub.add_parser("predict", help="print the fake probability of videos or face folders",
                       description="Detect faces in .mp4 files (or read face folders), score them with the trained "
                                   "backbones of models/NAME (each under the input view of its model card) and "
                                   "combine them with its saved ensemble: the pipeline's probability for each "
                                   "video, in one call, with its status (ok, no face, unreadable: the last two "
                                   "get the prior).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".mp4 (or other video) files, or face-crop folders")
    p.add_argument("--name", default="synthetic", help="dataset whose trained models to use (default: synthetic)")
    add_folder_flag(p, "--models", MODELS, "models folder; uses MODELS/NAME")
    p.add_argument("--method", default=None,
                   help="method to apply (default: the best on the blend split's OOF log-loss at fit time)")
    p.add_argument("--frames", action="store_true", help="also print every face crop's score per backbone")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_config_flag(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("transfer", help="score another dataset with a dataset's models, nothing fitted on it",
                       description="Score every video of dataset B with the trained backbones and the saved "
                                   "ensemble of dataset A, without training anything on B: the feature cache "
                                   "data/features/B_from_A/ (resumable), the predictions data/predictions/B_from_A/ "
                                   "and the report reports/B_from_A/ (report.md, leaderboard.csv, metrics.json "
                                   "with split 'all': every labelled video of B). Refuses a B that shares videos "
                                   "or families with the videos that trained A's models.")
    p.add_argument("--models", required=True, metavar="A", help="dataset whose models score B (models/A)")
    p.add_argument("--name", required=True, metavar="B", help="prepared dataset to score (data/interim/B)")
    add_folder_flag(p, "--interim", INTERIM, "prepared tables folder; reads INTERIM/B")
    add_folder_flag(p, "--models-dir", MODELS, "models folder; uses MODELS_DIR/A")
    add_folder_flag(p, "--features", FEATURES, "features folder; the cache goes to FEATURES/B_from_A")
    add_folder_flag(p, "--predictions", PREDICTIONS, "predictions folder; writes PREDICTIONS/B_from_A and reads "
                                                     "A's own PREDICTIONS/A for comparison")
    add_folder_flag(p, "--out", REPORTS, "reports folder; the report goes to OUT/B_from_A")
    add_config_flag(p)
    add_executor_flags(p)
    p.set_defaults(func=cmd_transfer)
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
