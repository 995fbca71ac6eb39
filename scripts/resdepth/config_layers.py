"""The run's config from its layers: config files, then `--config` overrides on top.

Torch-free: common.smk builds the config with it before anything is planned.

- Files: the `--configfile`s, merged in order (``config/paper.yaml site.yaml`` lays a site
  file over the paper config), or the embedded default when none is given. A config file
  is complete: it replaces the default instead of being merged into it, so a key a user's
  config lacks is reported by the schema, never filled in silently from the default.
- Overrides: `--config key=value` entries, merged into the files' config key by key, so
  ``--config 'training={"threads": 2}'`` changes one setting and keeps the others. A
  mapping merges into a mapping; anything else (a list, a number) replaces the value.
  Snakemake hands nested values over as strings; each is read back as YAML ("2" is the
  number 2, "null" is null, "inv_sqrt" stays a string).

A config file is read as JSON if it is JSON (as Snakemake reads it: YAML 1.1 would read
the JSON number ``2e-2`` as a string), else as YAML.
"""

import copy
import json

import yaml


def merged(base, overrides):
    """``base`` with ``overrides`` merged in (neither is changed)."""
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def typed(value, key="--config"):
    """A `--config` value with every string read back as YAML; text that is not YAML is
    an error naming its key."""
    if isinstance(value, dict):
        return {name: typed(item, f"{key} {name}") for name, item in value.items()}
    if isinstance(value, list):
        return [typed(item, f"{key}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, str) and value.strip():
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as error:
            problem = str(error).splitlines()[0]
            raise ValueError(f"{key}: {value!r} is not valid YAML ({problem})") from None
    return value


def read_config_file(path):
    """One config file's contents: JSON if it parses as JSON, else YAML."""
    with open(path) as file:
        text = file.read()
    try:
        return json.loads(text)
    except ValueError:
        return yaml.safe_load(text)


def layered_config(config_files, overrides):
    """The config: ``config_files`` merged in order, then the `--config` ``overrides``."""
    config = {}
    for path in config_files:
        layer = read_config_file(path)
        if not layer:  # a mistake, not a request for the default
            raise ValueError(f"config file {path} is empty")
        config = merged(config, layer)
    return merged(config, typed(overrides))
