"""The library modules a script runs, as the Snakefile declares them for its jobs."""

from pathlib import Path

import pytest

from resdepth import deps

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_every_import_form_is_found_and_nothing_else(tmp_path):
    source = tmp_path / "entry.py"
    source.write_text(
        "import torch\nimport resdepth\nimport resdepth.models\n"
        "from resdepth import data, jobs as j\nfrom resdepth.train import train_run\n"
        "from other import resdepth_like\n"
        "def f():\n    from resdepth import plots\n"
    )
    assert deps.direct_imports(source) == {"models", "data", "jobs", "train", "plots"}


def test_imports_are_followed_through_the_library(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("from resdepth import b\n")
    (tmp_path / "b.py").write_text("from resdepth.c import thing\n")
    (tmp_path / "c.py").write_text("import resdepth.a  # a cycle ends the walk\n")
    (tmp_path / "unused.py").write_text("")
    script = tmp_path / "script.py"
    script.write_text("from resdepth import a\n")
    monkeypatch.setattr(deps, "LIBRARY", tmp_path)
    assert deps.library_modules.__wrapped__(script) == ["a", "b", "c"]


def test_training_code_includes_what_train_imports_and_no_analysis_code():
    modules = deps.library_modules(SCRIPTS / "train_run.py")
    # grid: a training job reads its runs' cells (what they train) from the config there.
    assert {"train", "models", "complexity", "checkpoint", "settings", "grid"} <= set(modules)
    # Not the cost model or the pack planner: changing an estimate must not retrain.
    assert not {"plots", "aggregate", "cost", "packs", "expansion"} & set(modules)


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_every_entry_point_resolves_to_existing_modules(script):
    for name in deps.library_modules(SCRIPTS / script):
        assert (deps.LIBRARY / f"{name}.py").is_file()
