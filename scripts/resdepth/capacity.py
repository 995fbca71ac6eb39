"""Claim C4, λ as a capacity knob: the λ sweep's runs as tables, and a unimodality test.

The sweep trains one depth over fixed λ on a log scale (plus named scalings) and seeds,
tracking the geometric complexity (GC) of each run through training
(``complexity.GCTracker``). This module reads those runs back (torch-free):

- ``sweep_tables``: one row per run (final and peak GC, test accuracy, train loss) and
  one row per GC measurement (GC over training);
- ``unimodality``: whether GC(λ) has a single interior maximum, per seed and for the
  seed mean, with the test spelled out in the result so a reader can check it;
- ``interior_maximum``: claim C4's test with seed noise: does the highest interior point
  of the seed-mean curve exceed both ends by more than the noise?
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from resdepth.fits import paired_interval
from resdepth.scalings import is_fixed_lambda

#: Columns of gc_vs_lambda.csv (docs/file-contracts.md).
SWEEP_COLUMNS = (
    "run_id",
    "dataset",
    "arch",
    "depth",
    "width",
    "lr",
    "epochs",
    "batch_size",
    "scaling",
    "lambda",
    "seed",
    "grad_clip",
    "status",
    "gc_init",
    "gc_final",
    "gc_final_stderr",
    "gc_peak",
    "gc_peak_epoch",
    "train_loss",
    "test_acc",
)
#: Columns of gc_history.csv.
HISTORY_COLUMNS = ("run_id", "scaling", "lambda", "seed", "epoch", "gc", "gc_stderr")

#: The GC summaries the unimodality test is run on.
TESTED_METRICS = ("gc_final", "gc_peak")

TEST_DESCRIPTION = (
    "Per seed, the curve is GC against lambda over the fixed-lambda runs (a number, or "
    "one, inv_sqrt, inv at their lambda; not bn, skipinit) that finished "
    "(status ok), in increasing lambda. log10 GC is smoothed by a centred binomial "
    "running mean over 3 neighbouring lambdas (weights 1, 2, 1; 2, 1 at either end). A "
    "local maximum is a point above each of its neighbours (one neighbour at either end;"
    " a plateau counts once)."
    " shape: 'flat' (every smoothed value equal), 'interior maximum' (exactly one local "
    "maximum, at neither end: GC is "
    "unimodal in lambda with its peak inside the sweep), 'maximum at largest lambda' or "
    "'maximum at smallest lambda' (exactly one local maximum, at that end: monotone after"
    " smoothing), 'several maxima', or 'too few lambdas' (under 3 finished runs). The "
    "same test is applied to the seed mean of log10 GC per lambda. argmax_lambda: where "
    "the smoothed curve is largest."
)


def sweep_tables(metrics_paths, history_paths):
    """(per-run table, GC-over-training table) of the sweep's runs.

    A run is matched to its history by folder (``results/runs/<run_id>/``). GC summaries
    of a diverged run are left empty, like its accuracy: it has no final model.
    """
    histories = {Path(path).parent.name: path for path in history_paths}
    rows, measurements = [], []
    for path in metrics_paths:
        metrics = json.loads(Path(path).read_text())
        run_id = metrics["run_id"]
        if run_id not in histories:
            raise ValueError(f"{path}: no history.csv given for run {run_id!r}")
        history = pd.read_csv(histories[run_id])
        if "gc" not in history or history["gc"].isna().all():
            raise ValueError(
                f"{histories[run_id]}: no GC measured; train with training.gc.every >= 1"
            )
        gc = history.dropna(subset=["gc"])
        ok = metrics["status"] == "ok"
        peak = gc.loc[gc["gc"].idxmax()]
        rows.append(
            {
                **{key: metrics[key] for key in SWEEP_COLUMNS if key in metrics},
                "gc_init": gc["gc"].iloc[0] if gc["epoch"].iloc[0] == 0 else np.nan,
                "gc_final": gc["gc"].iloc[-1] if ok else np.nan,
                "gc_final_stderr": gc["gc_stderr"].iloc[-1] if ok else np.nan,
                "gc_peak": peak["gc"] if ok else np.nan,
                "gc_peak_epoch": int(peak["epoch"]) if ok else pd.NA,
            }
        )
        identity = {key: metrics[key] for key in ("scaling", "lambda", "seed")}
        for _, measurement in gc.iterrows():
            measurements.append(
                {
                    "run_id": run_id,
                    **identity,
                    **{key: measurement[key] for key in ("epoch", "gc", "gc_stderr")},
                }
            )
    if not rows:
        raise ValueError("the λ sweep has no runs")
    table = pd.DataFrame(rows, columns=SWEEP_COLUMNS).sort_values(["lambda", "seed", "run_id"])
    history = pd.DataFrame(measurements, columns=HISTORY_COLUMNS).astype({"epoch": int})
    return table.reset_index(drop=True), history.sort_values(["lambda", "seed", "run_id", "epoch"])


def smoothed(values):
    """Binomial (1, 2, 1) running mean; at either end (2, 1), so an end point is not
    pulled towards its neighbour more than an interior point is."""
    values = np.asarray(values, dtype=float)
    kernel = np.array([1.0, 2.0, 1.0])
    sums = np.convolve(values, kernel, mode="same")
    weights = np.convolve(np.ones(len(values)), kernel, mode="same")
    return sums / weights


def local_maxima(values):
    """Indices of the points not below their left neighbour and above their right one:
    the points above both neighbours, a plateau counted once (at its right end)."""
    padded = np.concatenate([[-np.inf], values, [-np.inf]])
    return [i for i in range(len(values)) if padded[i] <= padded[i + 1] > padded[i + 2]]


def curve_shape(lambdas, gc):
    """The test of TEST_DESCRIPTION on one curve (λ increasing, GC > 0 finite)."""
    lambdas, gc = np.asarray(lambdas, dtype=float), np.asarray(gc, dtype=float)
    if len(lambdas) < 3:
        return {"shape": "too few lambdas", "n_lambdas": len(lambdas), "argmax_lambda": None}
    curve = smoothed(np.log10(gc))
    maxima = local_maxima(curve)
    if curve.max() == curve.min():
        shape = "flat"
    elif len(maxima) > 1:
        shape = "several maxima"
    elif maxima[0] == 0:
        shape = "maximum at smallest lambda"
    elif maxima[0] == len(curve) - 1:
        shape = "maximum at largest lambda"
    else:
        shape = "interior maximum"
    highest = max(maxima, key=lambda i: curve[i])
    return {"shape": shape, "n_lambdas": len(lambdas), "argmax_lambda": float(lambdas[highest])}


def unimodality(table):
    """Run the unimodality test on final and peak GC of the sweep's fixed-λ runs."""
    fixed = table[table["scaling"].map(is_fixed_lambda)]
    finished = fixed[fixed["status"] == "ok"].sort_values("lambda")
    diverged = fixed[fixed["status"] != "ok"]
    smallest_diverged = float(diverged["lambda"].min()) if len(diverged) else None
    result = {
        "test": TEST_DESCRIPTION,
        "dataset": sorted(table["dataset"].unique()),
        "arch": sorted(table["arch"].unique()),
        "depth": sorted(int(d) for d in table["depth"].unique()),
        "lambdas": sorted(float(v) for v in fixed["lambda"].unique()),
        "seeds": sorted(int(s) for s in fixed["seed"].unique()),
        "diverged_runs": [
            {"lambda": float(r["lambda"]), "seed": int(r["seed"])} for _, r in diverged.iterrows()
        ],
        "smallest_diverged_lambda": smallest_diverged,
    }
    for metric in TESTED_METRICS:
        per_seed = []
        for seed, curve in finished.groupby("seed"):
            per_seed.append({"seed": int(seed), **curve_shape(curve["lambda"], curve[metric])})
        mean_log = np.log10(finished[metric]).groupby(finished["lambda"]).mean()
        seed_mean = curve_shape(mean_log.index.to_numpy(), 10 ** mean_log.to_numpy())
        interior = [c for c in per_seed if c["shape"] == "interior maximum"]
        result[metric] = {
            "fraction_interior_maximum": len(interior) / len(per_seed) if per_seed else None,
            "median_argmax_lambda": float(np.median([c["argmax_lambda"] for c in interior]))
            if interior
            else None,
            "shapes": {
                shape: sum(c["shape"] == shape for c in per_seed)
                for shape in sorted({c["shape"] for c in per_seed})
            },
            "per_seed": per_seed,
            "seed_mean": seed_mean,
            "verdict": verdict(per_seed, seed_mean, smallest_diverged),
        }
    return result


def verdict(per_seed, seed_mean, smallest_diverged):
    """What the test found, in words."""
    interior = [c for c in per_seed if c["shape"] == "interior maximum"]
    text = f"{len(interior)} of {len(per_seed)} seeds have a single interior maximum of GC"
    if interior:
        peaks = ", ".join(f"{c['argmax_lambda']:g}" for c in interior)
        text += f" (at lambda = {peaks})"
    others = sorted({c["shape"] for c in per_seed} - {"interior maximum"})
    if others:
        text += "; the others: " + ", ".join(others)
    text += f". Seed mean: {seed_mean['shape']}"
    if seed_mean["argmax_lambda"] is not None:
        text += f", largest at lambda = {seed_mean['argmax_lambda']:g}"
    if smallest_diverged is not None:
        text += f". Runs diverged from lambda = {smallest_diverged:g} (not in the curves)"
    return text + "."


def interior_maximum(table, metric, confidence):
    """Claim C4's test on the fixed-λ runs of the sweep, all finished (the caller reports a
    sweep with diverged runs as truncated): the interior λ whose seed-mean log10 GC is
    highest, and the paired intervals over seeds of its log10 GC minus that at the
    smallest and at the largest λ (``paired_interval``; measurement error: GC's own
    standard error, 0 for the exact method). None where the test cannot be run, with
    ``reason``: under 3 λ, or under 2 seeds finished at every λ.
    """
    lambdas = sorted(float(v) for v in table["lambda"].unique())
    seeds = sorted(set.intersection(*(set(g["seed"]) for _, g in table.groupby("lambda"))))
    result = {"metric": metric, "lambdas": lambdas, "seeds": [int(s) for s in seeds]}
    if len(lambdas) < 3:
        return {**result, "reason": f"{len(lambdas)} λ values, 3 needed for an interior point"}
    if len(seeds) < 2:
        return {**result, "reason": f"{len(seeds)} seed(s) at every λ, 2 needed for seed noise"}
    rows = table[table["seed"].isin(seeds)]
    log_gc = np.log10(rows.pivot(index="seed", columns="lambda", values=metric))
    # Var(log10 GC) = (stderr / (GC ln 10))²; 0 where GC is exact (no standard error) and
    # for the peak GC, whose standard error is not recorded.
    stderr_column = f"{metric}_stderr"
    if stderr_column in rows:
        stderr = rows.pivot(index="seed", columns="lambda", values=stderr_column).fillna(0)
    else:
        stderr = log_gc * 0
    log_var = (stderr / (10**log_gc * math.log(10))) ** 2
    mean = log_gc.mean()
    peak = float(mean.iloc[1:-1].idxmax())
    result |= {
        "mean_log10": [float(v) for v in mean],
        "interior_argmax_lambda": peak,
    }
    for end, name in ((lambdas[0], "smallest"), (lambdas[-1], "largest")):
        result[f"minus_{name}"] = paired_interval(
            log_gc[peak] - log_gc[end], log_var[peak] + log_var[end], confidence
        )
    return result
