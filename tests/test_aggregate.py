import json
import math

import pandas as pd
import pytest
from fake_results import write_run

from resdepth import aggregate, formats


def table_rows(runs):
    """The accuracy table's rows keyed by their scaling label (last key column)."""
    table = aggregate.accuracy_table(aggregate.summarise_accuracy(runs))
    return table, {row[table.n_keys - 1]: row[table.n_keys :] for row in table.rows}


def test_load_runs_has_contract_columns_then_extra_keys(tmp_path):
    path = write_run(tmp_path, 4, "inv", 0)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({"extra": 7, **record}))
    runs = aggregate.load_runs([path])
    assert list(runs.columns) == [*aggregate.RUN_COLUMNS, "extra"]
    assert len(runs) == 1 and runs.loc[0, "extra"] == 7


def test_mean_and_sample_std_over_seeds(tmp_path):
    accs = [0.90, 0.92, 0.97]
    paths = [write_run(tmp_path, 4, "inv", seed, test_acc=a) for seed, a in enumerate(accs)]
    summary = aggregate.summarise_accuracy(aggregate.load_runs(paths))
    cell = summary.iloc[0]
    std = math.sqrt(sum((a - 0.93) ** 2 for a in accs) / 2)
    assert cell["test_acc_mean"] == pytest.approx(0.93)
    assert cell["test_acc_std"] == pytest.approx(std)
    assert (cell["n_seeds"], cell["n_ok"], cell["n_diverged"]) == (3, 3, 0)
    assert cell["cell"] == f"93.0 ± {100 * std:.1f}"


def test_all_diverged_cell_is_shown_as_diverged_never_as_a_number(tmp_path):
    paths = [write_run(tmp_path, 64, "one", s, status="diverged") for s in (0, 1)]
    paths.append(write_run(tmp_path, 4, "one", 0, test_acc=0.9))
    runs = aggregate.load_runs(paths)
    # A diverged run that still carries a number must not leak into the table.
    runs.loc[runs["status"] == "diverged", "test_acc"] = 0.55
    summary = aggregate.summarise_accuracy(runs)
    cell = summary[summary["depth"] == 64].iloc[0]
    assert cell["cell"] == "diverged"
    assert math.isnan(cell["test_acc_mean"]) and math.isnan(cell["test_acc_std"])
    assert (cell["n_ok"], cell["n_diverged"]) == (0, 2)
    table, rows = table_rows(runs)
    assert rows["λ=1"] == ["90.0", "diverged"]
    assert "55" not in formats.markdown_table(table) + formats.latex_table(table)


def test_partial_divergence_reports_ok_seeds_and_count(tmp_path):
    paths = [
        write_run(tmp_path, 16, "one", 0, test_acc=0.89),
        write_run(tmp_path, 16, "one", 1, test_acc=0.91),
        write_run(tmp_path, 16, "one", 2, status="diverged"),
        write_run(tmp_path, 64, "one", 0, test_acc=0.80),
        write_run(tmp_path, 64, "one", 1, status="diverged"),
        write_run(tmp_path, 64, "one", 2, status="diverged"),
    ]
    _, rows = table_rows(aggregate.load_runs(paths))
    assert rows["λ=1"] == ["90.0 ± 1.4 (1/3 diverged)", "80.0 (2/3 diverged)"]


def test_scalings_in_paper_order_then_fixed_lambda_ascending(tmp_path):
    shuffled = [0.5, "skipinit", 0.1, "one", "bn", "inv", "inv_sqrt"]
    paths = [write_run(tmp_path, 4, s, 0) for s in shuffled]
    table, rows = table_rows(aggregate.load_runs(paths))
    assert list(rows) == [
        "λ=1",
        "λ=1/√n",
        "λ=1/n",
        "BatchNorm",
        "SkipInit",
        "fixed λ=0.1",
        "fixed λ=0.5",
    ]
    assert table.header == ["scaling", "n=4"]


def test_depth_columns_ascending_and_missing_cells_empty(tmp_path):
    paths = [write_run(tmp_path, d, "inv", 0) for d in (64, 4, 16)]
    paths.append(write_run(tmp_path, 4, "bn", 0))
    table, rows = table_rows(aggregate.load_runs(paths))
    assert table.header == ["scaling", "n=4", "n=16", "n=64"]
    assert rows["BatchNorm"] == ["90.0", "", ""]


def test_runs_with_other_settings_are_never_averaged_together(tmp_path):
    paths = [
        write_run(tmp_path, 4, "inv", 0, test_acc=0.90, lr=0.05),
        write_run(tmp_path, 4, "inv", 1, test_acc=0.92, lr=0.05),
        write_run(tmp_path, 4, "inv", 0, test_acc=0.50, lr=0.5),
    ]
    runs = aggregate.load_runs(paths)
    summary = aggregate.summarise_accuracy(runs)
    assert list(summary["lr"]) == [0.05, 0.5]
    assert list(summary["test_acc_mean"]) == pytest.approx([0.91, 0.50])
    table = aggregate.accuracy_table(summary)
    assert table.header == ["lr", "scaling", "n=4"]
    assert table.rows == [["0.05", "λ=1/n", "91.0 ± 1.4"], ["0.5", "λ=1/n", "50.0"]]
    assert "lr=" not in table.caption and "width=64" in table.caption


def test_markdown_table_layout(tmp_path):
    paths = [write_run(tmp_path, 4, "inv", 0), write_run(tmp_path, 16, "inv", 0)]
    table = aggregate.accuracy_table(aggregate.summarise_accuracy(aggregate.load_runs(paths)))
    lines = formats.markdown_table(table).splitlines()
    assert lines[2:] == [
        "| scaling | n=4 | n=16 |",
        "| --- | --: | --: |",
        "| λ=1/n | 90.0 | 90.0 |",
    ]


def test_latex_escape():
    assert formats.latex_escape("a_b & 50% #1 {x} $") == r"a\_b \& 50\% \#1 \{x\} \$"
    assert formats.latex_escape("λ=1/√n: 90.0 ± 1.4") == (
        r"\ensuremath{\lambda}=1/\ensuremath{\surd}n: 90.0 \ensuremath{\pm} 1.4"
    )
    assert formats.latex_escape(r"~^\ ") == r"\textasciitilde{}\textasciicircum{}\textbackslash{} "
    with pytest.raises(ValueError, match="no LaTeX escape"):
        formats.latex_escape("café")


def test_latex_table_is_booktabs_and_ascii(tmp_path):
    paths = [write_run(tmp_path, 4, s, seed) for s in ("inv_sqrt", 0.1) for seed in (0, 1)]
    table = aggregate.accuracy_table(aggregate.summarise_accuracy(aggregate.load_runs(paths)))
    tex = formats.latex_table(table)
    assert tex.isascii()
    lines = tex.splitlines()
    assert lines[1:5] == [r"\begin{tabular}{lr}", r"\toprule", r"scaling & n=4 \\", r"\midrule"]
    assert lines[5] == r"\ensuremath{\lambda}=1/\ensuremath{\surd}n & 90.0 \ensuremath{\pm} 0.0 \\"
    assert lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
    assert "batch\\_size=128" in lines[0]


def test_write_tables_and_csv_round_trip(tmp_path):
    paths = [write_run(tmp_path, 4, 0.1, s) for s in (0, 1)]
    runs = aggregate.load_runs(paths)
    runs.to_csv(tmp_path / "runs.csv", index=False)
    # A column of fixed λ only must come back as text, not floats.
    back = aggregate.read_runs_csv(tmp_path / "runs.csv")
    assert list(back["scaling"]) == ["0.1", "0.1"]
    out = [tmp_path / f"accuracy.{ext}" for ext in ("csv", "md", "tex")]
    aggregate.write_accuracy_tables(back, *out)
    summary = pd.read_csv(out[0])
    assert list(summary.columns) == list(aggregate.SUMMARY_COLUMNS)
    assert summary.loc[0, "label"] == "fixed λ=0.1"
    assert "fixed λ=0.1" in out[1].read_text()
    assert r"fixed \ensuremath{\lambda}=0.1" in out[2].read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("test_acc"), "missing keys test_acc"),
        (lambda r: r.update(status="nan"), "status 'nan' is not one of ok, diverged"),
        (lambda r: r.update(test_acc=None), "status is ok but test_acc is null"),
        (lambda r: r.update(scaling="half"), "unknown scaling 'half'"),
    ],
)
def test_bad_metrics_fail_naming_the_problem(tmp_path, change, message):
    path = write_run(tmp_path, 4, "inv", 0)
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=message):
        aggregate.load_runs([path])


def test_repeated_run_id_and_empty_input_fail(tmp_path):
    path = write_run(tmp_path, 4, "inv", 0)
    with pytest.raises(ValueError, match="appears in more than one"):
        aggregate.load_runs([path, path])
    with pytest.raises(ValueError, match="no metrics.json"):
        aggregate.load_runs([])


def test_gather_tables_keeps_every_row_and_refuses_a_table_off_its_contract(tmp_path):
    columns = ("run_id", "scaling", "test_acc")
    first, second, off = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    first.write_text("run_id,scaling,test_acc\na,0.5,0.9\n")
    second.write_text("run_id,scaling,test_acc\nb,inv,0.8\nc,one,0.7\n")
    off.write_text("run_id,test_acc,scaling\nd,0.6,inv\n")
    table = aggregate.gather_tables([first, second], columns)
    assert list(table["run_id"]) == ["a", "b", "c"]
    assert list(table["scaling"]) == ["0.5", "inv", "one"]  # a float λ stays its string
    with pytest.raises(ValueError, match=r"c\.csv: columns"):
        aggregate.gather_tables([first, off], columns)
    with pytest.raises(ValueError, match="no per-run tables"):
        aggregate.gather_tables([], columns)
