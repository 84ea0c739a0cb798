"""Paired differences between two ``budsam_eval.py`` runs on the same mixtures: the mean
and standard error of run B's SI-SDR improvement and BirdNET confidence minus run A's,
mixture by mixture, in all, per SNR, per noise kind and its family (``insects`` for
``insects: cicadas``) and per bird (the kinds from the mixtures' ``mixtures.csv``), beside
each run's own means. ``--out DIR`` also writes them to ``paired.csv`` and plots the
differences with their errors, group by group, in ``paired.png``.

    python -m bench.compare_runs results/A results/B --mixtures data/realworld_tune/mixtures.csv

Each run is a ``budsam_eval.py`` output folder (or its ``per_view.csv``); ``--method_a``
and ``--method_b`` pick a method in each by a part of its label (default: BudSAM with the
full box).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.common.files import atomic_path, write_rows_csv  # noqa: E402

SCORES = ("si_sdr_imp", "birdnet")
SCORE_NAMES = {"si_sdr_imp": "SI-SDR improvement (dB)", "birdnet": "BirdNET confidence"}
GROUPINGS = ("snr_db", "noise_family", "noise_kind", "bird_kind")


class CompareError(ValueError):
    """A run or the mixtures cannot be compared; the message names the file."""


def read_scores(run: Path, method_part: str) -> dict[str, dict[str, float]]:
    """Per mixture name, the scores of the one method of ``run`` whose label contains
    ``method_part`` (of several, the one whose label ends with it)."""
    per_view = run / "per_view.csv" if run.is_dir() else run
    if not per_view.is_file():
        raise CompareError(f"{per_view}: no such file (a budsam_eval.py output folder?)")
    rows = _read_rows(per_view, ("method", "name"))
    found = sorted({row["method"] for row in rows})
    methods = [method for method in found if method_part in method]
    if len(methods) > 1:
        methods = [method for method in methods if method.endswith(method_part)] or methods
    if len(methods) != 1:
        raise CompareError(
            f"{per_view}: {len(methods)} methods contain {method_part!r}; it has {found}"
        )
    try:
        return {
            row["name"]: {key: float(row[key]) if row.get(key) else math.nan for key in SCORES}
            for row in rows
            if row["method"] == methods[0]
        }
    except ValueError as error:
        raise CompareError(f"{per_view}: a score is not a number ({error})") from None


def read_mixtures(path: Path, groupings: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Per mixture name, its row of ``mixtures.csv`` and its noise family; every grouping
    must be a column (the family comes from ``noise_kind``)."""
    if not path.is_file():
        raise CompareError(f"{path}: no such file (the mixtures' mixtures.csv)")
    columns = {"noise_kind" if g == "noise_family" else g for g in groupings}
    rows = _read_rows(path, ("name", *sorted(columns)))
    for row in rows:
        row["noise_family"] = row.get("noise_kind", "").split(":")[0].strip()
    return {row["name"]: row for row in rows}


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of the CSV file ``path``, which must have the ``required`` columns."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in required if column not in (reader.fieldnames or [])]
        if missing:
            raise CompareError(f"{path}: no column {', '.join(missing)}")
        return list(reader)


def mean_and_error(values: list[float]) -> tuple[float, float]:
    """The mean of the finite ``values`` and its standard error (nan where too few)."""
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return math.nan, math.nan
    error = finite.std(ddof=1) / math.sqrt(finite.size) if finite.size > 1 else math.nan
    return float(finite.mean()), float(error)


def compare(
    scores_a: dict[str, dict[str, float]],
    scores_b: dict[str, dict[str, float]],
    mixtures: dict[str, dict[str, str]],
    names: list[str],
    grouping: str | None,
) -> list[dict]:
    """One row per group of ``names``, the mixtures both runs scored (all of them where
    ``grouping`` is None): its size, each run's means and the paired difference B - A with
    its error."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(mixtures[name][grouping] if grouping else "all", []).append(name)
    rows = []
    for group, members in groups.items():
        row: dict = {"group": group, "mixtures": len(members)}
        for key in SCORES:
            row[f"{key}_a"] = mean_and_error([scores_a[n][key] for n in members])[0]
            row[f"{key}_b"] = mean_and_error([scores_b[n][key] for n in members])[0]
            pairs = [scores_b[n][key] - scores_a[n][key] for n in members]
            row[f"{key}_diff"], row[f"{key}_error"] = mean_and_error(pairs)
        rows.append(row)
    return sorted(rows, key=lambda row: (-row["mixtures"], row["group"]))


def markdown(rows: list[dict], title: str) -> str:
    """The rows as a markdown table."""
    lines = [
        f"| {title} | mixtures | SI-SDR imp A | B | B - A (dB) | BirdNET A | B | B - A |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [row["group"], str(row["mixtures"])]
        for key, digits in zip(SCORES, (2, 3), strict=True):
            diff, error = row[f"{key}_diff"], row[f"{key}_error"]
            cells += [f"{row[f'{key}_a']:.{digits}f}", f"{row[f'{key}_b']:.{digits}f}"]
            cells.append(f"{diff:+.{digits}f} +- {error:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_differences(tables: dict[str, list[dict]], out_png: Path) -> Path:
    """Each group's paired difference B - A, one standard error either side, a panel per
    score; the groupings one under another."""
    labels, rows = [], []
    for grouping, table in tables.items():
        labels += [f"{grouping}: {row['group']}" if grouping != "all" else "all" for row in table]
        rows += table
    positions = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.28 * len(rows) + 1.6), sharey=True)
    for ax, key in zip(axes, SCORES, strict=True):
        diffs = np.array([row[f"{key}_diff"] for row in rows], dtype=float)
        errors = np.nan_to_num(np.array([row[f"{key}_error"] for row in rows], dtype=float))
        ax.errorbar(diffs, positions, xerr=errors, fmt="o", markersize=3, capsize=2)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_title(f"B - A, +- one standard error: {SCORE_NAMES[key]}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(positions, labels, fontsize=7)
    axes[0].invert_yaxis()
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out_png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_a", type=Path, help="budsam_eval.py output folder (or its per_view.csv)")
    p.add_argument("run_b", type=Path, help="the same, for the run compared with A")
    p.add_argument("--mixtures", type=Path, required=True, help="the mixtures' mixtures.csv")
    p.add_argument("--method_a", default="full box", help="part of the method's label in A")
    p.add_argument("--method_b", default="full box", help="part of the method's label in B")
    p.add_argument("--by", nargs="*", default=list(GROUPINGS), choices=GROUPINGS)
    p.add_argument("--out", type=Path, help="also write paired.csv and paired.png here")
    args = p.parse_args(argv)
    try:
        scores_a = read_scores(args.run_a, args.method_a)
        scores_b = read_scores(args.run_b, args.method_b)
        mixtures = read_mixtures(args.mixtures, tuple(args.by))
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shared = sorted(set(scores_a) & set(scores_b) & set(mixtures))
    if not shared:
        message = f"{args.run_a} and {args.run_b} scored no mixture of {args.mixtures} in common"
        print(f"error: {message}", file=sys.stderr)
        return 2
    left_out = len(set(scores_a) | set(scores_b)) - len(shared)
    if left_out:
        print(f"warning: {left_out} mixtures scored by one run only, or not in {args.mixtures}")
    print(f"A: {args.run_a}\nB: {args.run_b}")
    print("(+- one standard error of the mean paired difference)\n")
    tables = {}
    for grouping in (None, *args.by):
        tables[grouping or "all"] = compare(scores_a, scores_b, mixtures, shared, grouping)
        print(markdown(tables[grouping or "all"], grouping or "all") + "\n")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = [
            {"grouping": grouping, **row} for grouping, table in tables.items() for row in table
        ]
        write_rows_csv(args.out / "paired.csv", rows, tuple(rows[0]))
        plot = plot_differences(tables, args.out / "paired.png")
        print(f"written: {args.out / 'paired.csv'}, {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
