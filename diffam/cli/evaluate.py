"""``diffam-evaluate``: evaluate predicted vertebra label maps against ground truth (Hydra entry point).

Usage:
    diffam-evaluate pred=PRED gt=GT output_dir=OUT \
        gt_labels=verse|totalsegmentator|mapping.csv pred_labels=verse \
        levels=all|predicted

PRED and GT are two label files or two folders paired by file-name stem
(a folder of segment.py run folders, <case>/labels.nii.gz, pairs by <case>).
levels=predicted restricts the summary to the levels the prediction tried
(from the run's report.json, else the labels present) and lists the other
ground-truth vertebrae separately as not attempted.
Writes per_vertebra.csv, summary.csv, evaluation.json and report.md into
OUT and prints the summary table (Table 1 layout). Exit status 1 when no
pair could be evaluated, a pair failed (unreadable, an unfinished segment.py
run, labels that do not fit their convention) or a ground-truth case has no
prediction (unless allow_missing=true); 2 on a configuration error.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from diffam.cli.terminal import tolerate_any_terminal
from diffam.core.resources import config_dir
from diffam.evaluation import evaluate_paths, markdown_per_vertebra, markdown_summary, summarize
from diffam.evaluation.report import write_report

log = logging.getLogger("evaluate")


def run(cfg: DictConfig) -> int:
    """Evaluate as configured; returns the process exit status."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    settings.pop("hydra", None)
    try:
        res = evaluate_paths(
            pred=cfg.pred,
            gt=cfg.gt,
            pred_labels=cfg.pred_labels,
            gt_labels=cfg.gt_labels,
            pattern=cfg.pattern,
            pred_strip=list(cfg.pred_strip),
            gt_strip=list(cfg.gt_strip),
            max_distance_mm=float(cfg.id_max_distance_mm),
            levels=str(cfg.get("levels", "all")),
        )
    except (ValueError, FileNotFoundError) as e:
        log.error("%s", e)
        return 2
    paths = write_report(
        cfg.output_dir,
        res.cases,
        res.pairing.unpaired_pred,
        res.pairing.unpaired_gt,
        settings=settings,
    )
    rows = [v for c in res.cases for v in c.vertebrae]
    evaluated = [c for c in res.cases if not c.error]
    show = cfg.print_per_vertebra
    if show == "auto":
        show = len(evaluated) == 1
    if show and rows:
        print(markdown_per_vertebra(rows), end="\n\n")
    print(markdown_summary(summarize(rows)))
    print(res.pairing.report())
    for c in res.cases:
        if c.not_attempted:
            print(
                f"not attempted by the prediction, left out of the summary (levels=predicted): "
                f"{c.case}: {', '.join(c.not_attempted)}"
            )
    for c in res.failed:
        print(f"FAILED {c.case}: {c.error}")
    print(f"results in {Path(paths['json']).parent.resolve()}")
    if not evaluated:
        log.error("no pair of prediction and ground truth could be evaluated")
        return 1
    if res.pairing.unpaired_gt and not cfg.get("allow_missing", False):
        log.error("%d ground truth case(s) have no prediction (%s): the summary covers only "
                  "the cases found; segment them, or pass allow_missing=true to accept this",
                  len(res.pairing.unpaired_gt),
                  ", ".join(p.name if p.name != "labels.nii.gz" else p.parent.name
                            for p in res.pairing.unpaired_gt[:5]))
        return 1
    return 1 if res.failed else 0


@hydra.main(config_path=str(config_dir()), config_name="evaluate", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    status = run(cfg)
    if status:
        sys.exit(status)


def main() -> None:
    """Console entry point (``diffam-evaluate``, ``python scripts/evaluate.py``)."""
    tolerate_any_terminal()
    _main()
