"""The smoke-test config (.test/config/config.yaml) is the default, shrunk: every pipeline
test runs it, so it must keep up with the default's keys and stay valid."""

from conftest import REPO, TINY_CONFIG, default_config, tiny_config
from snakemake.utils import validate


def key_tree(config):
    """The nested keys of a config, without its values."""
    if isinstance(config, dict):
        return {key: key_tree(value) for key, value in config.items()}
    return None


def test_smoke_config_has_every_key_of_the_default_and_is_valid():
    assert key_tree(tiny_config()) == key_tree(default_config()), TINY_CONFIG
    validate(tiny_config(), str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
