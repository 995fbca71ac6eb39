"""How Snakemake was started: mistakes of the command line and of the working directory
that Snakemake itself reports late or misleadingly. common.smk checks them while the
Snakefile is read, before Snakemake builds its DAG.

Torch-free, argument-free beyond ``argv``: Snakemake hands the Snakefile no settings at
that point (its execution settings are set after parsing), so the command line is read.
"""

from pathlib import Path

#: Snakemake's flag for config files, under both its names.
CONFIGFILE_FLAGS = ("--configfile", "--configfiles")

#: Flags under which Snakemake takes no lock (the jobs it spawns pass ``--nolock``).
LOCK_FREE_FLAGS = ("--nolock", "--unlock")


def flags(argv):
    """The ``--flag`` names in ``argv`` (``--flag=value`` counts as ``--flag``)."""
    return [arg.split("=")[0] for arg in argv if arg.startswith("--")]


def refuse_repeated_configfile(argv):
    """``--configfile a --configfile b``: Snakemake's command line keeps only the last
    flag's files, so ``a`` would be dropped silently and its keys reported missing."""
    given = [flag for flag in flags(argv) if flag in CONFIGFILE_FLAGS]
    if len(given) > 1:
        raise ValueError(
            f"--configfile is given {len(given)} times; Snakemake keeps only the last one's "
            "files. Name every file after one flag, in order: --configfile a.yaml b.yaml"
        )


def refuse_second_run(argv, snakemake_dir=".snakemake"):
    """A second Snakemake started in a directory another one holds: Snakemake checks for
    incomplete files before it takes its lock, so it would see the first run's running
    jobs as incomplete and advise ``--rerun-incomplete``, which would redo them under it.
    Its lock files (``.snakemake/locks/*.lock``) exist exactly while a run holds the
    directory, or after one was killed."""
    if set(flags(argv)) & set(LOCK_FREE_FLAGS):
        return
    locks = sorted(Path(snakemake_dir, "locks").glob("*.lock"))
    if locks:
        raise RuntimeError(
            f"another Snakemake run holds this directory ({locks[0]} exists): wait for it "
            "to finish. If none is running (it was killed), release its lock with "
            "`snakemake --unlock`, then start again."
        )
