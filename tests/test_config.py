"""Bad configs fail at once, naming the problem, before any job runs."""

import pytest
import yaml
from conftest import REPO, default_config


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


@pytest.mark.workflow
@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_bad_config_fails_before_any_job(workflow, name):
    change, expected_words = BAD_CONFIGS[name]
    result = workflow.run(config=change(default_config()), check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "validating config" in message or "datasets." in message
    for word in expected_words:
        assert word in message, f"{name}: {word!r} not in the error message"
    assert not workflow.path("results").exists()
    assert not workflow.path(".snakemake/log").exists() or "Job " not in message


def test_default_configs_are_valid():
    from snakemake.utils import validate

    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    for path in sorted((REPO / "config").glob("*.yaml")):
        validate(yaml.safe_load(path.read_text()), str(schema))
