"""Claim C4, λ as a capacity knob: the λ sweep's runs as tables, its stability limit,
and a test that GC(λ) has one interior peak beyond the noise.

The sweep trains one depth over fixed λ on a log scale (plus named scalings) and seeds,
tracking the geometric complexity (GC) of each run through training
(``complexity.GCTracker``). Its unclipped runs are the evidence: the smallest λ at which
any seed diverges is the measured stability limit, and C4 is tested on the λ below it
(the stable range). Clipped runs (``capacity.clipped``) train past the limit only because
their gradients are clipped; they are read and drawn as a separate curve and never enter
a test. This module reads the runs back (torch-free):

- ``sweep_tables``: one row per run (GC at init, end and peak, their ratio, the epoch of
  the peak, flags for runs whose GC says little about a learned function) and one row per
  GC measurement (GC over training);
- ``stability_limit`` and ``stable_runs``: where the unclipped sweep stops training;
- ``peak_test``: the one-peak test with seed noise and its power (claim C4);
- ``unimodality``: the noise-free shape of every seed's curve on the stable range, a
  description to read beside the test.
"""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from resdepth.fits import paired_interval, power_figures
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
    "gc_final_over_init",
    "gc_final_scale_free",
    "gc_peak",
    "gc_peak_epoch",
    "train_loss",
    "test_acc",
    "flag_gc_peak_at_init",
    "flag_train_loss_above_chance",
)
#: Columns of gc_history.csv.
HISTORY_COLUMNS = ("run_id", "scaling", "lambda", "seed", "grad_clip", "epoch", "gc", "gc_stderr")

#: The settings one sweep fixes: a test never mixes runs that differ in one of them (an
#: MLP sweep and a transformer sweep are two curves, two verdicts).
SWEEP_SETTINGS = ("dataset", "arch", "depth", "width", "lr", "epochs", "batch_size")

#: The GC summaries the unimodality description is run on.
TESTED_METRICS = ("gc_final", "gc_peak")

TEST_DESCRIPTION = (
    "Per seed, the curve is GC against lambda over the unclipped fixed-lambda runs (a "
    "number, or one, inv_sqrt, inv at their lambda; not bn, skipinit) below the stability "
    "limit (the smallest lambda at which a seed diverged), in increasing lambda. log10 GC "
    "is smoothed by a centred binomial running mean over 3 neighbouring lambdas (weights "
    "1, 2, 1; 2, 1 at either end). A local maximum is a point above each of its "
    "neighbours (one neighbour at either end; a plateau counts once). shape: 'flat' "
    "(every smoothed value equal), 'interior maximum' (exactly one local maximum, at "
    "neither end), 'maximum at largest lambda' or 'maximum at smallest lambda' (exactly "
    "one local maximum, at that end: monotone after smoothing), 'several maxima', or 'too "
    "few lambdas' (under 3). The same is done for the seed mean of log10 GC per lambda. "
    "No noise enters: this describes the curves; claim C4's test (results/claims.md) "
    "weighs them against the seed and GC noise."
)


def is_clipped(grad_clip):
    """Whether a run's gradient norm was clipped (the column is empty for unclipped runs)."""
    return grad_clip is not None and not pd.isna(grad_clip) and grad_clip > 0


def sweep_tables(metrics_paths, history_paths, num_classes):
    """(per-run table, GC-over-training table) of the sweep's runs.

    A run is matched to its history by folder (``results/runs/<run_id>/``).
    ``num_classes`` maps each data set to its number of classes: a final train loss above
    ln(classes), the loss of a uniform guess, flags a run that did not learn. GC at the
    end of a diverged run is left empty, like its accuracy: it has no final model; its GC
    at init and the epoch of its peak (over the measurements before it diverged) are kept.
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
        if metrics["dataset"] not in num_classes:
            raise ValueError(f"{path}: no data manifest for dataset {metrics['dataset']!r}")
        gc = history[np.isfinite(history["gc"])]
        ok = metrics["status"] == "ok"
        peak = gc.loc[gc["gc"].idxmax()]
        init = gc["gc"].iloc[0] if gc["epoch"].iloc[0] == 0 else np.nan
        final = gc["gc"].iloc[-1] if ok else np.nan
        loss = metrics.get("train_loss")
        chance = math.log(num_classes[metrics["dataset"]])
        rows.append(
            {
                **{key: metrics[key] for key in SWEEP_COLUMNS if key in metrics},
                "gc_init": init,
                "gc_final": final,
                "gc_final_stderr": gc["gc_stderr"].iloc[-1] if ok else np.nan,
                "gc_final_over_init": final / init,
                "gc_final_scale_free": final / gc["logit_var"].iloc[-1] if ok else np.nan,
                "gc_peak": peak["gc"] if ok else np.nan,
                "gc_peak_epoch": int(peak["epoch"]),
                "flag_gc_peak_at_init": bool(peak["epoch"] == 0 and metrics["epochs"] > 0),
                "flag_train_loss_above_chance": bool(ok and loss is not None and loss > chance),
            }
        )
        identity = {key: metrics.get(key) for key in ("scaling", "lambda", "seed", "grad_clip")}
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


def fixed_lambda_runs(table, clipped=False):
    """The runs of the λ curve: fixed λ (named ones included), clipped or not."""
    fixed = table["scaling"].map(is_fixed_lambda)
    clip = table["grad_clip"].map(is_clipped) if "grad_clip" in table else False
    return table[fixed & (clip if clipped else ~clip)]


def stability_limit(table):
    """The unclipped sweep's stability limit: the smallest λ at which any seed diverged
    (None: every run trained), with the diverged runs."""
    runs = fixed_lambda_runs(table)
    diverged = runs[runs["status"] != "ok"].sort_values(["lambda", "seed"])
    return {
        "limit_lambda": float(diverged["lambda"].min()) if len(diverged) else None,
        "diverged_runs": [
            {"lambda": float(r["lambda"]), "seed": int(r["seed"])} for _, r in diverged.iterrows()
        ],
    }


def stable_runs(table):
    """The unclipped fixed-λ runs below the stability limit (all of them finished)."""
    runs = fixed_lambda_runs(table)
    limit = stability_limit(table)["limit_lambda"]
    return runs if limit is None else runs[runs["lambda"] < limit]


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


def curve_shape(lambdas, gc, smooth=True):
    """The shape of TEST_DESCRIPTION of one curve (λ increasing, GC > 0 finite)."""
    lambdas, gc = np.asarray(lambdas, dtype=float), np.asarray(gc, dtype=float)
    if len(lambdas) < 3:
        return {"shape": "too few lambdas", "n_lambdas": len(lambdas), "argmax_lambda": None}
    curve = smoothed(np.log10(gc)) if smooth else np.log10(gc)
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
    """The noise-free shape of final and peak GC over the stable range, per seed and for
    the seed mean, per sweep (SWEEP_SETTINGS)."""
    sweeps = []
    for settings, sweep in table.groupby(list(SWEEP_SETTINGS)):
        stable = stable_runs(sweep).sort_values("lambda")
        result = {
            "settings": {k: _plain(v) for k, v in zip(SWEEP_SETTINGS, settings, strict=True)},
            **stability_limit(sweep),
            "lambdas": sorted(float(v) for v in stable["lambda"].unique()),
            "seeds": sorted(int(s) for s in stable["seed"].unique()),
        }
        for metric in TESTED_METRICS:
            per_seed = [
                {"seed": int(seed), **curve_shape(curve["lambda"], curve[metric])}
                for seed, curve in stable.groupby("seed")
            ]
            mean_log = np.log10(stable[metric]).groupby(stable["lambda"]).mean()
            seed_mean = curve_shape(mean_log.index.to_numpy(), 10 ** mean_log.to_numpy())
            interior = [c for c in per_seed if c["shape"] == "interior maximum"]
            result[metric] = {
                "fraction_interior_maximum": len(interior) / len(per_seed) if per_seed else None,
                "shapes": {
                    shape: sum(c["shape"] == shape for c in per_seed)
                    for shape in sorted({c["shape"] for c in per_seed})
                },
                "per_seed": per_seed,
                "seed_mean": seed_mean,
                "description": shape_description(per_seed, seed_mean, result["limit_lambda"]),
            }
        sweeps.append(result)
    return {"test": TEST_DESCRIPTION, "sweeps": sweeps}


def shape_description(per_seed, seed_mean, limit):
    """The shapes of one sweep's curves, in words (a description, not a verdict)."""
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
    if limit is not None:
        text += f". Stability limit lambda = {limit:g}: the curves stop below it"
    return text + "."


def _plain(value):
    """A numpy scalar as the Python value JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


# --- claim C4's test -------------------------------------------------------------------

ONE_PEAK = "one interior peak"
SEVERAL_PEAKS = "several peaks"
NO_INTERIOR_PEAK = "no interior point above both ends"
UNRESOLVED = "not resolved by the noise"


def _log_gc(runs, metric, seeds):
    """(log10 GC, its variance from GC's own standard error) as (seed × λ) frames.

    Var(log10 GC) = (stderr / (GC ln 10))²: 0 where GC is exact, and for the peak GC,
    whose standard error is not recorded.
    """
    rows = runs[runs["seed"].isin(seeds)]
    log_gc = np.log10(rows.pivot(index="seed", columns="lambda", values=metric))
    column = f"{metric}_stderr"
    stderr = (
        rows.pivot(index="seed", columns="lambda", values=column).fillna(0)
        if column in rows
        else log_gc * 0
    )
    return log_gc, (stderr / (10**log_gc * math.log(10))) ** 2


def _difference(log_gc, log_var, high, low, confidence):
    """The paired interval of log10 GC(high) − log10 GC(low) over seeds."""
    return paired_interval(log_gc[high] - log_gc[low], log_var[high] + log_var[low], confidence)


def peak_test(runs, metric, confidence, min_lambdas, power, reference_effect):
    """Claim C4's test on one sweep's stable runs (``stable_runs``): does the seed-mean
    log10 GC curve have one interior peak beyond the noise?

    Over the seeds present at every λ (at least 2) and at least ``min_lambdas`` λ:

    - the interior λ whose seed-mean log10 GC is highest, and the paired intervals over
      seeds (``paired_interval`` at ``confidence``) of its log10 GC minus that at the
      smallest and at the largest λ;
    - a second peak: a fall on the way up to the peak or a rise after it, i.e. a pair of
      λ on one side of the peak whose paired interval (Bonferroni-corrected over all such
      pairs) shows GC going the wrong way beyond the noise;
    - the shape: NO_INTERIOR_PEAK if an end interval lies at or below 0 (an end as high
      as any interior point: monotone, U-shaped, flat); else SEVERAL_PEAKS if there is a
      second peak; ONE_PEAK if both end intervals lie above 0 and the seed-mean curve has
      exactly one local maximum; else UNRESOLVED;
    - power: for each end, the smallest peak height the seeds decide with probability
      ``power`` and the seeds a peak of ``reference_effect`` decades needs (the seed
      spread and GC error as measured here).

    Returns the figures, or ``{"reason": ...}`` where the test cannot be run.
    """
    lambdas = sorted(float(v) for v in runs["lambda"].unique())
    by_lambda = [set(g["seed"]) for _, g in runs.groupby("lambda")]
    seeds = sorted(set.intersection(*by_lambda)) if by_lambda else []
    result = {"metric": metric, "lambdas": lambdas, "seeds": [int(s) for s in seeds]}
    if len(lambdas) < min_lambdas:
        reason = f"{len(lambdas)} λ in the stable range, {min_lambdas} needed"
        return {**result, "reason": reason}
    if len(seeds) < 2:
        reason = f"{len(seeds)} seed(s) at every stable λ, 2 needed for seed noise"
        return {**result, "reason": reason}
    log_gc, log_var = _log_gc(runs, metric, seeds)
    mean = log_gc.mean()
    peak = float(mean.iloc[1:-1].idxmax())
    ends = {
        "minus_smallest": _difference(log_gc, log_var, peak, lambdas[0], confidence),
        "minus_largest": _difference(log_gc, log_var, peak, lambdas[-1], confidence),
    }
    second = _second_peak(log_gc, log_var, lambdas, lambdas.index(peak), confidence)
    single = len(local_maxima(mean.to_numpy())) == 1
    if any(i["high"] <= 0 for i in ends.values()):
        shape = NO_INTERIOR_PEAK
    elif second is not None:
        shape = SEVERAL_PEAKS
    elif single and all(i["low"] > 0 for i in ends.values()):
        shape = ONE_PEAK
    else:
        shape = UNRESOLVED
    powers = {
        name: power_figures(
            log_gc[peak] - log_gc[end],
            log_var[peak] + log_var[end],
            confidence,
            power,
            reference_effect,
        )
        for name, end in (("minus_smallest", lambdas[0]), ("minus_largest", lambdas[-1]))
    }
    return {
        **result,
        "mean_log10": [float(v) for v in mean],
        "interior_argmax_lambda": peak,
        **ends,
        "second_peak": second,
        "seed_mean_local_maxima": len(local_maxima(mean.to_numpy())),
        "shape": shape,
        "power": _worst_power(powers, power, reference_effect, confidence),
    }


def _second_peak(log_gc, log_var, lambdas, peak, confidence):
    """The clearest wrong-way step on either side of the peak (index ``peak``): a pair
    (a, b) with a < b ≤ peak where GC falls, or peak ≤ a < b where it rises, whose
    interval lies above 0 at Bonferroni-corrected confidence; None if there is none."""
    left = [(a, b) for a, b in itertools.combinations(range(peak + 1), 2)]
    right = [(a, b) for a, b in itertools.combinations(range(peak, len(lambdas)), 2)]
    pairs = [(lambdas[a], lambdas[b]) for a, b in left] + [
        (lambdas[b], lambdas[a]) for a, b in right
    ]  # (higher, lower) if the curve went the wrong way
    if not pairs:
        return None
    corrected = 1 - (1 - confidence) / len(pairs)
    found = []
    for higher, lower in pairs:
        interval = _difference(log_gc, log_var, higher, lower, corrected)
        if interval["low"] > 0:
            found.append({"above_lambda": higher, "below_lambda": lower, **interval})
    return max(found, key=lambda f: f["low"]) if found else None


def _worst_power(powers, power, reference_effect, confidence):
    """The peak must clear both ends: of the two ends' power figures, the larger smallest
    decided height and the larger number of seeds decide."""
    seeds = [p["seeds_for_reference"] for p in powers.values()]
    return {
        "power": power,
        "confidence": confidence,
        "smallest_decided": max(p["smallest_decided"] for p in powers.values()),
        "reference": reference_effect,
        "seeds_for_reference": None if None in seeds else max(seeds),
        "most_seeds": next(iter(powers.values()))["most_seeds"],
        "per_end": powers,
    }
