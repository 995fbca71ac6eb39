"""Figures of a config whose runs all diverged say so instead of failing or drawing
empty axes (the whole pipeline on such a config: tests/test_robustness.py)."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from fake_results import write_run

from resdepth import aggregate, expansion_plots, expansion_study, plots


def texts(fig):
    """The figure's text boxes, wrapped lines joined; closes the figure."""
    text = " ".join(" ".join(t.get_text().split()) for ax in fig.axes for t in ax.texts)
    plt.close(fig)
    return text


@pytest.fixture
def diverged_runs(tmp_path):
    """Two depths, two scalings; every run diverged in its first epoch."""
    paths = [
        write_run(tmp_path, depth, scaling, 0, status="diverged", diverged_epoch=1)
        for depth in (4, 16)
        for scaling in ("one", "inv")
    ]
    return aggregate.load_runs(paths), [p.parent / "history.csv" for p in paths]


def test_accuracy_and_training_curve_figures_say_no_run_trained(diverged_runs):
    runs, history_paths = diverged_runs
    assert "No trained run: all 4 runs diverged" in texts(plots.accuracy_vs_depth_figure(runs))
    histories = plots.load_histories(history_paths, runs)
    assert "all 4 runs diverged in their first epoch" in texts(
        plots.training_curves_figure(runs, histories)
    )


@pytest.mark.parametrize("name", ["truncated_accuracy", "lesion"])
def test_expansion_accuracy_figures_say_no_run_trained(name):
    """The tables hold rows for trained runs only: none when every run diverged."""
    empty = pd.DataFrame(columns=expansion_study.RUN_TABLE_COLUMNS[name])
    fig = getattr(expansion_plots, f"{name}_figure")(**{name: empty})
    assert "No trained run" in texts(fig)


def test_claims_json_has_no_ratio_to_a_zero_accuracy():
    """A trained network with 0 % test accuracy (10 test images) made C5's accuracy
    ratio inf, and the claims rule failed writing JSON."""
    from resdepth import claims

    assert claims._float(float("inf")) is None and claims._float(float("nan")) is None
    assert claims._float(0.5) == 0.5
