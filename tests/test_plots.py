import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config
from fake_results import write_init_norms, write_run
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb

from resdepth import aggregate, plots
from resdepth.scalings import scaling_label, sorted_scalings


@pytest.fixture
def runs_and_histories(tmp_path):
    """Two depths, three scalings, two seeds; λ=1 diverges at depth 16 (one seed at 4)."""
    paths = []
    for depth in (4, 16):
        for scaling in ("one", "inv", 0.1):
            for seed in (0, 1):
                diverged = scaling == "one" and (depth == 16 or seed == 1)
                status = "diverged" if diverged else "ok"
                paths.append(write_run(tmp_path, depth, scaling, seed, 0.9, status))
    runs = aggregate.load_runs(paths)
    return runs, [p.parent / "history.csv" for p in paths]


def draw(name, tmp_path, runs_and_histories):
    """Build one of the three figures from the synthetic inputs."""
    runs, history_paths = runs_and_histories
    if name == "init_norms":
        return plots.init_norms_figure(pd.read_csv(write_init_norms(tmp_path / "norms.csv")))
    if name == "accuracy_vs_depth":
        return plots.accuracy_vs_depth_figure(runs)
    return plots.training_curves_figure(runs, plots.load_histories(history_paths, runs))


FIGURES = ("init_norms", "accuracy_vs_depth", "training_curves")


@pytest.mark.parametrize("name", FIGURES)
def test_figure_written_as_pdf_and_png_reproducibly(name, tmp_path, runs_and_histories):
    first = plots.save_figure(draw(name, tmp_path, runs_and_histories), tmp_path / "a" / name)
    second = plots.save_figure(draw(name, tmp_path, runs_and_histories), tmp_path / "b" / name)
    assert [p.name for p in first] == [f"{name}.pdf", f"{name}.png"]
    assert first[0].read_bytes().startswith(b"%PDF")
    assert first[1].read_bytes().startswith(b"\x89PNG")
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert not plt.get_fignums(), "save_figure must close the figure"


def test_save_figure_keeps_dots_in_the_stem(tmp_path):
    fig, _ = plots.new_figure()
    pdf, png = plots.save_figure(fig, tmp_path / "lr0.05")
    assert (pdf.name, png.name) == ("lr0.05.pdf", "lr0.05.png")


def test_scaling_colors_are_distinct_and_independent_of_the_others():
    named = [plots.scaling_color(s) for s in ("one", "inv_sqrt", "inv", "bn", "skipinit")]
    fixed = [plots.scaling_color(lam) for lam in (0.01, 0.1, 1.0)]
    assert len({tuple(c) for c in named + fixed}) == 8
    _, alone = plots.hue_order_and_palette(["inv"])
    _, together = plots.hue_order_and_palette(["one", "inv", "0.1"])
    assert alone["λ=1/n"] == together["λ=1/n"] == plots.scaling_color("inv")


def test_accuracy_figure_never_plots_a_diverged_run_as_an_accuracy(runs_and_histories):
    runs, _ = runs_and_histories
    fig = plots.accuracy_vs_depth_figure(runs)
    ax = fig.axes[0]
    lines = {bars.get_label(): bars.lines[0] for bars in ax.containers}
    assert list(lines) == ["λ=1", "λ=1/n", "fixed λ=0.1"]
    # λ=1 has one finished seed at depth 4 and none at depth 16: one point, at 90%.
    assert list(lines["λ=1"].get_ydata()) == pytest.approx([90.0])
    assert lines["λ=1"].get_xdata()[0] == pytest.approx(4, rel=0.1)
    # Its diverged runs are 'x' markers on the bottom edge (axes coordinate y = 0),
    # one per cell, labelled diverged/seeds.
    one_color = plots.scaling_color("one")
    crosses = [
        c
        for c in ax.collections
        if isinstance(c, PathCollection)
        and len(c.get_offsets())
        and tuple(c.get_edgecolor()[0][:3]) == tuple(one_color[:3])
    ]
    offsets = [tuple(o) for c in crosses for o in c.get_offsets()]
    assert sorted(x for x, _ in offsets) == pytest.approx([4, 16], rel=0.1)
    assert {y for _, y in offsets} == {0.0}
    assert sorted(t.get_text() for t in ax.texts) == ["1/2", "2/2"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["λ=1", "λ=1/n", "fixed λ=0.1", "diverged (runs/seeds)"]
    plt.close(fig)


def test_training_curves_have_one_column_per_depth_and_two_metric_rows(runs_and_histories):
    runs, history_paths = runs_and_histories
    fig = plots.training_curves_figure(runs, plots.load_histories(history_paths, runs))
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["n=4", "n=16", "", ""]
    assert [ax.get_yscale() for ax in fig.axes] == ["linear", "linear", "log", "log"]
    plt.close(fig)


def test_runs_without_a_completed_epoch_are_listed_in_their_panel(tmp_path):
    paths = [write_run(tmp_path, 4, "inv", 0)]
    paths += [write_run(tmp_path, 4, "one", s, status="diverged", diverged_epoch=1) for s in (0, 1)]
    runs = aggregate.load_runs(paths)
    histories = plots.load_histories([p.parent / "history.csv" for p in paths], runs)
    assert set(histories["run_id"]) == {runs.loc[runs["scaling"] == "inv", "run_id"].item()}
    fig = plots.training_curves_figure(runs, histories)
    assert [t.get_text() for t in fig.axes[0].texts] == ["λ=1: 2/2 diverged in epoch 1"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["λ=1", "λ=1/n", "diverged (last epoch)"]
    plt.close(fig)


@pytest.mark.workflow
def test_real_runs_that_diverged_in_their_first_epoch_are_listed(finished, tmp_path):
    """The trainer writes an epoch-0 row (GC at initialisation) for every run: a run that
    diverged in epoch 1 has that row and nothing else, and still has no curve to draw."""
    config = tiny_config()
    config["grid"]["lr"] = [*config["grid"]["lr"], 1000.0]  # diverges in its first step
    workflow = finished.copy_to(tmp_path)
    workflow.run("results/figures/training_curves.png", config=config)
    runs = aggregate.read_runs_csv(workflow.path("results/runs.csv"))
    exploded = runs[runs["lr"] == 1000.0]
    assert len(exploded) == 4 and (exploded["diverged_epoch"] == 1).all()
    paths = [workflow.path(f"results/runs/{r}/history.csv") for r in runs["run_id"]]
    histories = plots.load_histories(paths, runs)
    assert set(histories.loc[histories["lr"] == 1000.0, "epoch"]) == {0}  # the init row only
    fig = plots.training_curves_figure(runs, histories)
    notes = sorted(t.get_text() for ax in fig.axes for t in ax.texts)
    # One note per (depth, scaling) of the lr=1000 rows, none for the runs that trained.
    assert notes == sorted(["λ=1: 1/1 diverged in epoch 1", "λ=1/n: 1/1 diverged in epoch 1"] * 2)
    plt.close(fig)


def test_histories_of_unknown_runs_and_mixed_init_settings_fail(tmp_path, runs_and_histories):
    runs, history_paths = runs_and_histories
    with pytest.raises(ValueError, match="is not in runs.csv"):
        plots.load_histories(history_paths, runs[runs["scaling"] != "one"])
    norms = pd.read_csv(write_init_norms(tmp_path / "norms.csv"))
    norms.loc[0, "width"] = 128
    with pytest.raises(ValueError, match="mixes several"):
        plots.init_norms_figure(norms)


def test_power_of_ten_labels():
    assert plots.power_of_ten(50) == "10⁵⁰"
    assert plots.power_of_ten(-2.0) == "10⁻²"


def contrast_on_white(color):
    """WCAG contrast ratio of ``color`` against white (3:1: legible for lines)."""
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in color[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 1.05 / (luminance + 0.05)


@pytest.mark.workflow
def test_expansion_orders_figure_draws_path_terms_per_input_norm(finished):
    """One panel per scaling; each curve is ‖P_k‖/‖x₀‖ of the run's own table (the
    order-0 path term is x₀), never a ratio to an exploding ‖x_n − x₀‖; every depth's
    colour is legible on white; the legend says how the prior line is scaled."""
    from resdepth import expansion_plots

    orders = expansion_plots.read_table(finished.path("results/expansion/orders.csv"))
    assert orders["seed"].nunique() == 1  # the tiny run: a curve is one run's terms
    fig = expansion_plots.orders_figure(orders)
    scalings = sorted_scalings(orders["scaling"])
    assert [ax.get_title() for ax in fig.axes] == [scaling_label(s) for s in scalings]
    assert "‖x₀‖" in fig.axes[0].get_ylabel()
    paths = orders[orders["decomposition"] == "path"]
    for ax, scaling in zip(fig.axes, scalings, strict=True):
        expected = []
        for _, run in paths[paths["scaling"] == scaling].groupby(["run_id", "stage"]):
            terms = run.set_index("order")["rel_norm"]
            expected.append((terms[terms.index >= 1] / terms[0]).to_numpy())
        drawn = [line.get_ydata() for line in ax.lines if line.get_marker() == "o"]
        assert len(drawn) == len(expected)
        for curve in drawn:
            assert any(
                len(curve) == len(e) and np.allclose(curve, e, rtol=1e-13, atol=0) for e in expected
            )
    depth_colors = {line.get_color() for ax in fig.axes for line in ax.lines}
    assert len(depth_colors) == orders["depth"].nunique()
    assert min(contrast_on_white(to_rgb(c)) for c in depth_colors) >= 3.0
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("C(n,k)" in label and "scaled" in label for label in legend)
    plt.close(fig)
