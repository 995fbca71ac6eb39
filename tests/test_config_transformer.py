"""Transformer and recall settings (issue 20): a bad one fails before any job, naming its key."""

import pytest
from conftest import default_config
from test_config import assert_refused_naming, chain, mutate, validation_error

TRANSFORMER_GRID = chain(
    mutate("grid.dataset", ["recall"]),
    mutate("grid.arch", ["transformer"]),
    mutate("capacity", None),
)

BAD_CONFIGS = {
    "heads not dividing the width": (
        mutate("arch_options.transformer.heads", 5),
        ["arch_options.transformer.heads", "width 32", "transformer.init_norms"],
    ),
    "heads not dividing a grid width": (
        chain(TRANSFORMER_GRID, mutate("grid.width", [64, 66])),
        ["arch_options.transformer.heads", "width 66", "grid"],
    ),
    "context shorter than the sequence": (
        mutate("arch_options.transformer.context", 16),
        ["arch_options.transformer.context", "17 tokens", "recall"],
    ),
    "context shorter than longer sequences": (
        mutate("datasets.recall.pairs", 9),
        ["arch_options.transformer.context", "19 tokens"],
    ),
    "norm none with bn in the grid": (
        chain(TRANSFORMER_GRID, mutate("arch_options.transformer.norm", "none")),
        ["arch_options.transformer.norm", "bn", "grid"],
    ),
    "norm none with bn in the init norms": (
        mutate("transformer.init_norms.scaling", ["one", "bn"]),
        ["transformer.init_norms.norm", "bn"],
    ),
    "transformer on images": (
        chain(TRANSFORMER_GRID, mutate("grid.dataset", ["digits"])),
        ["grid.arch", "'transformer' on 'digits'"],
    ),
    "transformer study on images": (
        mutate("transformer.truncation.dataset", "digits"),
        ["transformer.truncation.arch", "'digits'"],
    ),
    "mlp on token ids": (
        mutate("init_norms.dataset", "recall"),
        ["init_norms.arch", "'mlp' on 'recall'"],
    ),
    "transformer without arch_options": (
        mutate("arch_options.transformer", None),
        ["transformer.init_norms.arch", "arch_options.transformer"],
    ),
    "recall without a section": (
        mutate("datasets.recall", None),
        ["transformer.init_norms.dataset", "datasets.recall"],
    ),
    "more pairs than keys": (
        chain(mutate("datasets.recall.pairs", 20), mutate("arch_options.transformer.context", 41)),
        ["datasets.recall.pairs", "keys is 16"],
    ),
    "unknown norm": (mutate("arch_options.transformer.norm", "post_ln"), ["post_ln"]),
    "unknown init": (mutate("arch_options.transformer.init", "xavier"), ["xavier"]),
    "truncation orders reach the modules": (
        mutate("transformer.truncation.depth", 2),
        ["transformer.truncation.orders", "4 modules"],
    ),
    "truncation fit range outside the grid": (
        mutate("transformer.truncation.fit_max_lambda", 2.0),
        ["transformer.truncation.fit_max_lambda"],
    ),
    "radius order too low for a drift": (mutate("transformer.radius.order", 3), ["order", "4"]),
    "typo'd transformer key": (mutate("transformer.init_norms.depths", [1]), ["depths"]),
    "adamw without its betas": (mutate("training.optimizer", "adamw"), ["betas", "required"]),
    "unknown optimizer": (mutate("training.optimizer", "lion"), ["lion", "adamw"]),
    "transformers in packed packs": (
        chain(TRANSFORMER_GRID, mutate("training.pack_backend", "packed")),
        ["training.pack_backend", "loop"],
    ),
    "adamw beta of 1": (
        chain(
            mutate("training.optimizer", "adamw"),
            mutate("training.betas", [0.9, 1.0]),
            mutate("training.eps", 1e-8),
        ),
        ["betas"],
    ),
}


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_bad_transformer_config_is_refused_naming_the_key(name):
    assert_refused_naming(name, *BAD_CONFIGS[name])


EDGE_CONFIGS = {
    "a transformer grid on recall": TRANSFORMER_GRID,
    "bn with norm unset (pre-LN)": chain(
        TRANSFORMER_GRID, mutate("grid.scaling", ["one", "bn", "skipinit"])
    ),
    "bn with pre-LN": chain(TRANSFORMER_GRID, mutate("arch_options.transformer.norm", "pre_ln")),
    "context exactly the sequence": mutate("arch_options.transformer.context", 17),
    "orders just below the modules": mutate("transformer.truncation.depth", 3),
    "no transformer studies": mutate("transformer", None),
    "adamw": chain(
        mutate("training.optimizer", "adamw"),
        mutate("training.betas", [0.9, 0.95]),
        mutate("training.eps", 1e-8),
    ),
    "as many pairs as keys": chain(
        mutate("datasets.recall.pairs", 16), mutate("arch_options.transformer.context", 33)
    ),
}


@pytest.mark.parametrize("name", EDGE_CONFIGS)
def test_edge_transformer_config_is_accepted(name):
    assert validation_error(EDGE_CONFIGS[name](default_config())) is None
