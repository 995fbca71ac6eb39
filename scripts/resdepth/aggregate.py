"""Collect the training runs into one table and summarise test accuracy over seeds.

The accuracy table is the analogue of the paper's Table 1: one row per scaling, one
column per depth, each cell the test accuracy mean ± std over seeds. A diverged run has
no accuracy: it is counted, never averaged and never printed as a number. Runs that
differ in any other grid setting (learning rate, width, ...) are never averaged
together; such a setting becomes an extra row key of the table.
"""

import json
import math

import pandas as pd

from resdepth import formats
from resdepth.scalings import scaling_label, scaling_name, scaling_sort_key

#: Keys of a run's metrics.json (docs/file-contracts.md), in the column order of runs.csv.
RUN_COLUMNS = (
    "run_id",
    "dataset",
    "arch",
    "depth",
    "scaling",
    "seed",
    "width",
    "lr",
    "epochs",
    "batch_size",
    "lambda",
    "status",
    "diverged_epoch",
    "diverged_step",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "wall_time_s",
    "n_params",
    "device",
)

#: Grid settings other than depth, scaling and seed. Runs differing in one of them are
#: never averaged together.
SETTINGS = ("dataset", "arch", "width", "lr", "epochs", "batch_size")

STATUSES = ("ok", "diverged")

#: Columns of tables/accuracy.csv: one row per (settings, scaling, depth) cell.
SUMMARY_COLUMNS = (
    *SETTINGS,
    "scaling",
    "label",
    "depth",
    "n_seeds",
    "n_ok",
    "n_diverged",
    "test_acc_mean",
    "test_acc_std",
    "cell",
)


def sort_runs(frame):
    """Sort by settings, then scaling in table order, then depth and seed."""
    return frame.sort_values(
        [*SETTINGS, "scaling", "depth", "seed"],
        key=lambda col: col.map(scaling_sort_key) if col.name == "scaling" else col,
        ignore_index=True,
    )


def load_runs(metrics_paths):
    """Read metrics.json files into one DataFrame, one row per run, sorted.

    Contract keys come first in contract order; any extra keys follow, a nested object
    (``provenance``) as one column per leaf (``provenance.training.lr``). A missing key,
    an unknown status, an ok run without accuracy or a repeated run id is an error
    naming the file.
    """
    if not metrics_paths:
        raise ValueError("no metrics.json files given")
    records, extra_keys = [], []
    for path in metrics_paths:
        with open(path) as f:
            record = flattened(json.load(f))
        missing = [key for key in RUN_COLUMNS if key not in record]
        if missing:
            raise ValueError(f"{path}: missing keys {', '.join(missing)}")
        if record["status"] not in STATUSES:
            raise ValueError(
                f"{path}: status {record['status']!r} is not one of {', '.join(STATUSES)}"
            )
        if record["status"] == "ok" and record["test_acc"] is None:
            raise ValueError(f"{path}: status is ok but test_acc is null")
        extra_keys += [key for key in record if key not in RUN_COLUMNS + tuple(extra_keys)]
        records.append(record)
    runs = pd.DataFrame.from_records(records, columns=[*RUN_COLUMNS, *extra_keys])
    repeated = runs["run_id"][runs["run_id"].duplicated()]
    if len(repeated):
        raise ValueError(f"run id {repeated.iloc[0]!r} appears in more than one metrics.json")
    runs["scaling"] = runs["scaling"].map(scaling_name)
    return sort_runs(runs)


def flattened(record, prefix=""):
    """``record`` with its nested objects' leaves as dotted keys, e.g. ``provenance.torch``."""
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict) and value:
            flat.update(flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_runs_csv(path):
    """Read runs.csv back; scalings stay text even when every one is a fixed λ."""
    return pd.read_csv(path, dtype={"scaling": str, "device": str})


def gather_tables(paths, columns):
    """Concatenate per-run tables (e.g. results/expansion/runs/*/orders.csv), checking
    that each has exactly the contracted columns."""
    frames = []
    for path in paths:
        frame = pd.read_csv(path, dtype={"scaling": str})
        if tuple(frame.columns) != tuple(columns):
            raise ValueError(f"{path}: columns {list(frame.columns)}, expected {list(columns)}")
        frames.append(frame)
    if not frames:
        raise ValueError("no per-run tables to gather")
    return pd.concat(frames, ignore_index=True)


def format_cell(mean, std, n_ok, n_diverged):
    """Accuracy in percent with one decimal, e.g. ``97.3 ± 0.4 (1/3 diverged)``.

    ``diverged`` when no seed finished; no ± part with a single finished seed.
    """
    if n_ok == 0:
        return "diverged"
    text = f"{100 * mean:.1f}"
    if n_ok > 1:
        text += f" ± {100 * std:.1f}"
    if n_diverged:
        text += f" ({n_diverged}/{n_ok + n_diverged} diverged)"
    return text


def summarise_accuracy(runs):
    """One row per (settings, scaling, depth): seeds, divergences, mean and std.

    Mean and std (sample std, ddof=1) are over the seeds that finished, as fractions;
    both are NaN when none finished, std is NaN with a single one.
    """
    keys = [*SETTINGS, "scaling", "depth"]
    rows = []
    for key, cell in sort_runs(runs).groupby(keys, sort=False):
        ok = cell.loc[cell["status"] == "ok", "test_acc"].astype(float)
        n_diverged = int((cell["status"] == "diverged").sum())
        mean = ok.mean() if len(ok) else math.nan
        std = ok.std(ddof=1) if len(ok) > 1 else math.nan
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "label": scaling_label(key[-2]),
                "n_seeds": len(cell),
                "n_ok": len(ok),
                "n_diverged": n_diverged,
                "test_acc_mean": mean,
                "test_acc_std": std,
                "cell": format_cell(mean, std, len(ok), n_diverged),
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def varying_settings(frame):
    """The SETTINGS that take more than one value in ``frame``."""
    return [s for s in SETTINGS if frame[s].nunique() > 1]


def format_value(value):
    """A setting's value as text: numbers with ``{:g}``, anything else as is."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def accuracy_table(summary):
    """Scaling × depth, as strings.

    Settings that vary become leading row keys; constant ones go into the caption.
    A depth a row has no runs for is left empty.
    """
    varying = varying_settings(summary)
    constant = [s for s in SETTINGS if s not in varying]
    first = summary.iloc[0]
    caption = "Test accuracy (%), mean ± std over seeds"
    if constant:
        caption += "; " + ", ".join(f"{s}={format_value(first[s])}" for s in constant)
    depths = sorted(summary["depth"].unique())
    rows = []
    for key, group in summary.groupby([*varying, "scaling"], sort=False):
        cells = dict(zip(group["depth"], group["cell"], strict=True))
        rows.append(
            [
                *[format_value(v) for v in key[:-1]],
                scaling_label(key[-1]),
                *[cells.get(d, "") for d in depths],
            ]
        )
    header = [*varying, "scaling", *[f"n={d}" for d in depths]]
    return formats.Table(caption, header, rows, n_keys=len(varying) + 1)


def write_accuracy_tables(runs, csv_path, md_path, tex_path):
    """Write tables/accuracy.{csv,md,tex} from the runs DataFrame."""
    summary = summarise_accuracy(runs)
    summary.to_csv(csv_path, index=False)
    table = accuracy_table(summary)
    with open(md_path, "w") as f:
        f.write(formats.markdown_table(table))
    with open(tex_path, "w") as f:
        f.write(formats.latex_table(table))
    return summary
