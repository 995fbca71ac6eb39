"""Bad configs fail at once, naming the problem, before any job runs."""

import pytest
import yaml
from conftest import REPO, default_config
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def mutate(path, value):
    """The default config with ``path`` (dotted) set to ``value`` (or deleted if None)."""

    def apply(config):
        *parents, leaf = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
        return config

    return apply


BAD_CONFIGS = {
    "unknown scaling": (mutate("grid.scaling", ["one", "inv_cube"]), ["inv_cube", "skipinit"]),
    "depth 0": (mutate("grid.depth", [0, 4]), ["depth", "minimum"]),
    "negative lr": (mutate("grid.lr", [-0.1]), ["lr", "-0.1"]),
    "missing dataset section": (mutate("datasets.digits", None), ["datasets"]),
    "typo'd key": (mutate("training.wieght_decay", 0.1), ["wieght_decay"]),
    "missing grid key": (mutate("grid.epochs", None), ["epochs"]),
    "unknown dataset": (mutate("grid.dataset", ["mnist"]), ["mnist", "digits"]),
    "unknown device": (mutate("training.device", "tpu"), ["tpu", "cuda"]),
    "negative fixed lambda": (mutate("grid.scaling", [-0.5]), ["-0.5"]),
    "test fraction above 1": (mutate("datasets.digits.test_fraction", 1.5), ["test_fraction"]),
    "empty seed list": (mutate("grid.seed", []), ["seed"]),
    "momentum not a number": (mutate("training.momentum", "high"), ["momentum", "high"]),
}


SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_bad_config_is_rejected_naming_the_problem(name):
    """The schema the workflow validates every config against (common.smk), in process."""
    change, expected_words = BAD_CONFIGS[name]
    with pytest.raises(WorkflowError, match="validating config") as error:
        validate(change(default_config()), SCHEMA)
    for word in expected_words:
        assert word in str(error.value), f"{name}: {word!r} not in the error message"


@pytest.mark.workflow
@pytest.mark.parametrize("name", ["unknown scaling", "missing grid key"])
def test_workflow_validates_the_config_before_any_job(workflow, name):
    """Real snakemake, for two of the bad configs: the check runs before any job."""
    change, expected_words = BAD_CONFIGS[name]
    result = workflow.run(config=change(default_config()), check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "validating config" in message
    for word in expected_words:
        assert word in message, f"{name}: {word!r} not in the error message"
    assert not workflow.path("results").exists()
    assert not workflow.path(".snakemake/log").exists() or "Job " not in message


def test_default_configs_are_valid():
    for path in sorted((REPO / "config").glob("*.yaml")):
        validate(yaml.safe_load(path.read_text()), SCHEMA)
