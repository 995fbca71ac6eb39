"""Every command that README.md, config/README.md and docs/*.md show works as written.

The commands are read from the documents themselves (indented and ```bash code blocks,
and `snakemake ...` in backticks), so a new one is tested as soon as it is written. They
run in the documents' order, with bash, in a copy of the tiny run (conftest's `finished`)
whose embedded default is the tiny config: a command that runs the default pipeline runs
the smoke test for real. A command for `config/paper.yaml` or the SLURM profile (CIFAR-10,
GPUs, a cluster), or for `config/transformer.yaml` (ten minutes of CPU training, which
tests/test_transformer_studies.py covers in small), runs as a dry run, and must still name
its cores or a profile, as a real run needs. Snakemake runs on the runtime install
(tests/runtime_only.py).
"""

import os
import re
import shutil
import subprocess

import pytest
from conftest import REPO

pytestmark = pytest.mark.workflow

DOCS = (
    "README.md",
    "config/README.md",
    *(f"docs/{p.name}" for p in sorted(REPO.glob("docs/*.md"))),
)

#: What a shell line must start with to be a command (and not, e.g., YAML).
COMMAND = re.compile(r"(\.venv/bin/\S+|tools/\S+|tests/\S+|python3?|printf|snakemake)(\s|$)")

#: Commands these tests do not run, by a part of them, and where they are exercised.
NOT_RUN_HERE = {
    "tools/install.sh": "installs from the package index: CI runs it on a clean clone",
    "python3 -m venv": "installs CUDA torch from PyPI: a GPU machine's install",
    "-m pytest": "the test suite itself",
    "tests/slurm/": "starts a SLURM cluster as root: tests/test_slurm.py runs it",
}

#: Options that let a real snakemake run start: cores, jobs or a profile that sets them.
RUNS_JOBS = re.compile(r"\s(--cores|-c|--jobs|-j|--profile|--workflow-profile)[\s=]")
#: Options of a snakemake command that runs no job.
RUNS_NO_JOB = re.compile(r"\s(-n|--dry-run|--report|--list-rules|--unlock|--lint)(\s|$)")


def code_commands(text):
    """Commands of the indented and ```bash blocks, continuation lines joined and
    trailing comments dropped, in order; the ```python blocks' sources apart."""
    commands, python, fence = [], [], None
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            if fence == "python":
                python.append("")
            continue
        if fence == "python":
            python[-1] += line + "\n"
            continue
        if fence is not None and fence != "bash":
            continue
        command = line.strip() if fence == "bash" else line[4:] if line[:4] == "    " else ""
        while command.endswith("\\"):
            command = command[:-1] + next(lines).strip()
        command = re.sub(r"\s{2,}#\s.*$", "", command)
        if COMMAND.match(command):
            commands.append(command)
    return commands, python


def inline_commands(text):
    """`snakemake ...` quoted in the prose."""
    return re.findall(r"`((?:\.venv/bin/)?snakemake\s[^`]*)`", text)


def documented():
    """``(document, command)`` for every command of every document, in order."""
    found = []
    for name in DOCS:
        text = (REPO / name).read_text()
        commands, _ = code_commands(text)
        found += [(name, command) for command in commands + inline_commands(text)]
    return found


def as_run_here(command):
    """The command as these tests run it: paper-scale, transformer-study, SLURM and conda
    runs as dry runs."""
    snakemake = re.search(r"(^|\s|&&\s*)(\S*snakemake)\s", command)
    heavy = ("config/paper.yaml", "config/transformer.yaml", "profiles/slurm", "conda")
    heavy = any(part in command for part in heavy)
    if snakemake and heavy and not RUNS_NO_JOB.search(command):
        start = snakemake.end(2)
        return command[:start] + " --dry-run" + command[start:]
    return command


@pytest.fixture(scope="module")
def docs_workflow(finished, tmp_path_factory):
    """A copy of the tiny run with the tiny config as its default, a `.venv` and the
    repository's lint settings, and a site profile `mysite` as docs/slurm.md's."""
    workflow = finished.copy_to(tmp_path_factory.mktemp("docs"))
    shutil.copy(REPO / ".test" / "config" / "config.yaml", workflow.path("config/config.yaml"))
    for name in ("pyproject.toml", ".gitignore"):
        shutil.copy(REPO / name, workflow.path(name))
    workflow.path(".venv").symlink_to((REPO / ".venv").resolve())
    workflow.path("mysite").mkdir()
    workflow.path("mysite/config.yaml").write_text("default-resources:\n  slurm_account: x\n")
    return workflow


def shell(command, workflow, runtime_only):
    """Run ``command`` with bash in ``workflow``'s root, `.venv/bin` on the PATH."""
    env = dict(workflow.env if runtime_only else os.environ)
    env["PATH"] = f"{workflow.path('.venv/bin')}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ["bash", "-c", command],
        cwd=workflow.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_documents_show_the_commands_these_tests_run():
    commands = [command for _, command in documented()]
    assert ".venv/bin/snakemake --cores all" in commands
    assert "snakemake --configfile config/paper.yaml --report results/report.html" in commands
    assert any("site.yaml" in command for command in commands)
    for document, command in documented():
        if "snakemake" in command and not RUNS_NO_JOB.search(f" {command} "):
            # A real run without cores stops at once ("cores have to be specified").
            assert RUNS_JOBS.search(f" {command} "), f"{document}: {command}"


def test_every_documented_command_works_as_written(docs_workflow):
    failures = []
    for document, command in documented():
        if any(part in command for part in NOT_RUN_HERE):
            continue
        if "--software-deployment-method conda" in command and not shutil.which("conda"):
            continue
        dev_tool = "ruff" in command or "snakefmt" in command or "--lint" in command
        result = shell(as_run_here(command), docs_workflow, runtime_only=not dev_tool)
        output = result.stdout + result.stderr
        if "--report" in command and "config/paper.yaml" in command:
            # The tiny run's results: the report refuses to describe them as paper.yaml's.
            if result.returncode == 0 or "made with another config" not in output:
                failures.append(f"{document}: {command}: not refused by name\n{output[-2000:]}")
        elif result.returncode != 0:
            failures.append(f"{document}: {command} exited {result.returncode}\n{output[-2000:]}")
    assert not failures, "\n\n".join(failures)


def test_readme_notebook_example_runs(docs_workflow):
    _, python = code_commands((REPO / "README.md").read_text())
    assert len(python) == 1 and "resdepth.load_run" in python[0]
    env = dict(docs_workflow.env)
    env["PYTHONPATH"] += os.pathsep + str(docs_workflow.path("scripts"))  # `pip install -e .`
    result = subprocess.run(
        ["python", "-c", python[0]],
        cwd=docs_workflow.root,
        env={**env, "PATH": f"{docs_workflow.path('.venv/bin')}{os.pathsep}{env['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "‖P_k‖ / ‖x_0‖: [1.0," in result.stdout


def test_docs_cite_the_science_brief_the_repository_holds():
    """docs/science.md, by the sections it has (the brief it replaces is not in the
    repository)."""
    sections = set(re.findall(r"^## (§\d+)", (REPO / "docs/science.md").read_text(), re.M))
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        path = REPO / name
        if path.suffix not in {".py", ".md", ".yaml", ".smk", ".rst", ".cff"}:
            continue
        text = path.read_text()
        assert not re.search(r"PAPER\.md", text), name  # (escaped: this file is tracked)
        for section in re.findall(r"docs/science\.md (§\d+)", text):
            assert section in sections, f"{name} cites docs/science.md {section}"
