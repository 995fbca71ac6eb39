"""Bad configs fail at once, naming the problem, before any job runs.

Most cases call the validation that common.smk runs (``configcheck.validate``) in
process; a few real snakemake runs check that common.smk runs it before planning.
"""

import pytest
import yaml
from conftest import REPO, default_config
from snakemake.exceptions import WorkflowError

from resdepth import configcheck

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


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


def chain(*changes):
    def apply(config):
        for change in changes:
            config = change(config)
        return config

    return apply


CONV_ON_CIFAR = chain(
    mutate("datasets.cifar10", {"archive": None, "augment": False}),
    mutate("arch_options.conv", {"stem_stride": 2}),
)

#: name: (change of the default config, words the error must contain)
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
    # Non-finite numbers pass every bound of a JSON schema.
    "NaN lr": (mutate("grid.lr", [float("nan")]), ["grid.lr[0]", "nan", "finite"]),
    "inf lr": (mutate("grid.lr", [0.02, float("inf")]), ["grid.lr[1]", "inf"]),
    "NaN momentum": (mutate("training.momentum", float("nan")), ["training.momentum"]),
    "NaN weight decay": (mutate("training.weight_decay", float("nan")), ["weight_decay"]),
    "inf weight decay": (mutate("training.weight_decay", float("inf")), ["weight_decay"]),
    "NaN test fraction": (
        mutate("datasets.digits.test_fraction", float("nan")),
        ["datasets.digits.test_fraction"],
    ),
    "NaN lambda bound": (
        mutate("expansion.truncation.lambda_min", float("nan")),
        ["expansion.truncation.lambda_min"],
    ),
    "inf capacity lambda": (mutate("capacity.lambda_max", float("inf")), ["lambda_max"]),
    "NaN fixed lambda": (mutate("grid.scaling", [float("nan")]), ["grid.scaling[0]"]),
    "NaN claims threshold": (
        mutate("claims.C3.confidence", float("nan")),
        ["claims.C3.confidence", "finite"],
    ),
    "-inf warm-up": (mutate("training.warmup_epochs", float("-inf")), ["warmup_epochs"]),
    # Orders at or above the truncation depth are exact: NaN slopes.
    "truncation orders reach depth": (
        mutate("expansion.truncation.depth", 2),
        ["expansion.truncation.orders", "depth"],
    ),
    # Sizes: an unbounded depth exhausted memory while planning.
    "huge depth": (mutate("grid.depth", [1_000_000_000]), ["1000000000", "maximum"]),
    "huge init depth": (mutate("init_norms.depth", [10**9]), ["maximum"]),
    "huge truncation depth": (mutate("expansion.truncation.depth", 10**9), ["maximum"]),
    "huge capacity depth": (mutate("capacity.depth", 10**9), ["maximum"]),
    "huge width": (mutate("grid.width", [10**7]), ["maximum"]),
    "huge seed": (mutate("grid.seed", [2**40]), ["maximum"]),
    "huge split seed": (mutate("datasets.digits.split_seed", 2**40), ["maximum"]),
    # Two grid cells, one run id: one of them would be dropped.
    "near-duplicate lr": (mutate("grid.lr", [0.02, 0.020000001]), ["grid", "lr0.02"]),
    "near-duplicate lambda": (mutate("grid.scaling", [0.1, 0.1000001]), ["grid", "lam0.1"]),
    "capacity lr formats like the grid's": (
        # the sweep's unclipped named-scaling runs are grid runs
        mutate("capacity.lr", 0.0200000001),
        ["capacity", "lr0.02"],
    ),
    "smooth grid tower": (
        mutate("arch_options.mlp", {"activation": "tanh"}),
        ["arch_options.mlp.activation", "ReLU"],
    ),
    "clipped sweep in packed packs": (
        mutate("training.pack_backend", "packed"),
        ["capacity.clipped", "pack_backend"],
    ),
    # Cross-key checks ("Weaker" in issue 13): each used to fail late or cryptically.
    "tiny test fraction": (
        mutate("datasets.digits.test_fraction", 0.001),
        ["datasets.digits.test_fraction", "one per class"],
    ),
    # 1347 training images = 2 * 673 + 1
    "bn with a last batch of one": (mutate("grid.batch_size", [673]), ["grid.batch_size", "bn"]),
    "bn init norms on one image": (mutate("init_norms.batch_size", 1), ["init_norms.batch_size"]),
    "bn expansion batch of one image": (
        mutate("expansion.batch_size", 1),
        ["expansion.batch_size", "bn"],
    ),
    "conv on digits": (mutate("grid.arch", ["conv"]), ["grid.arch", "digits"]),
    "init norms conv on digits": (
        chain(mutate("init_norms.arch", "conv"), mutate("arch_options.conv", {"stem_stride": 1})),
        ["init_norms.arch", "digits"],
    ),
    "init norms dataset without a section": (
        mutate("init_norms.dataset", "cifar10"),
        ["init_norms.dataset", "datasets.cifar10"],
    ),
    "truncation dataset without a section": (
        mutate("expansion.truncation.dataset", "cifar10"),
        ["expansion.truncation.dataset", "datasets.cifar10"],
    ),
    "truncation lambda_min above lambda_max": (
        chain(
            mutate("expansion.truncation.lambda_min", 2.0),
            mutate("expansion.truncation.fit_max_lambda", 3.0),
        ),
        ["expansion.truncation.fit_max_lambda", "lambda_min"],
    ),
    "stem stride larger than the image": (
        chain(
            CONV_ON_CIFAR,
            mutate("grid.dataset", ["cifar10"]),
            mutate("grid.arch", ["conv"]),
            mutate("arch_options.conv", {"stem_stride": 32 + 1}),
        ),
        ["arch_options.conv.stem_stride", "33"],
    ),
    "conv without arch_options": (
        chain(
            CONV_ON_CIFAR,
            mutate("grid.dataset", ["cifar10"]),
            mutate("grid.arch", ["conv"]),
            mutate("arch_options.conv", None),
        ),
        ["grid.arch", "arch_options.conv"],
    ),
    "inverted C3 thresholds": (
        mutate("claims.C3.stalled_below", 0.9),
        ["claims.C3.stalled_below", "trained_above"],
    ),
    "C1 orders not measured": (mutate("claims.C1.orders", [1, 5]), ["claims.C1.orders", "[5]"]),
    "C5 orders not measured": (
        mutate("claims.C5.truncation_orders", [1, 9]),
        ["claims.C5.truncation_orders", "max_order"],
    ),
    # Issue 23: numbers YAML 1.1 reads as text (an exponent without a dot).
    "epochs written 1e3": (mutate("grid.epochs", ["1e3"]), ["grid.epochs[0]", "write 1000"]),
    "lr written 2e-2": (mutate("grid.lr", [0.01, "2e-2"]), ["grid.lr[1]", "write 0.02"]),
    "fixed lambda written 1e-3": (mutate("grid.scaling", ["1e-3"]), ["grid.scaling[0]", "0.001"]),
    "init depth written 1e2": (mutate("init_norms.depth", [1, "1e2"]), ["init_norms.depth[1]"]),
    "sweep bound written 1e-1": (mutate("capacity.lambda_min", "1e-1"), ["capacity.lambda_min"]),
    "truncation lambda written 1e-4": (
        mutate("expansion.truncation.lambda_min", "1e-4"),
        ["expansion.truncation.lambda_min", "write 0.0001"],
    ),
    "a fractional depth": (mutate("grid.depth", [4.5]), ["4.5", "integer"]),
    "packed backend compiles": (
        chain(
            mutate("capacity.clipped", None),
            mutate("training.pack_backend", "packed"),
            mutate("training.compile", True),
        ),
        ["training.compile", "packed"],
    ),
    "packed backend compiles, no sweep": (
        chain(
            mutate("capacity", None),
            mutate("training.pack_backend", "packed"),
            mutate("training.compile", True),
        ),
        ["training.compile"],
    ),
    "C2 needs more depths than measured": (
        mutate("claims.C2.min_depths", 8),
        ["claims.C2.min_depths", "7 distinct init_norms.depth"],
    ),
    "C2 depths counted once": (
        chain(mutate("init_norms.depth", [1, 10, 10, 1]), mutate("claims.C2.min_depths", 3)),
        ["claims.C2.min_depths", "2 distinct"],
    ),
    # The exact boundary: an order equal to the depth is exact too.
    "truncation order equal to depth": (
        mutate("expansion.truncation.depth", 3),
        ["expansion.truncation.orders", "depth (3)"],
    ),
    "gelu grid tower": (
        mutate("arch_options.mlp", {"activation": "gelu"}),
        ["arch_options.mlp.activation"],
    ),
    "tanh conv grid tower": (
        chain(
            CONV_ON_CIFAR,
            mutate("grid.dataset", ["cifar10"]),
            mutate("grid.arch", ["conv"]),
            mutate("arch_options.conv", {"stem_stride": 2, "activation": "tanh"}),
        ),
        ["arch_options.conv.activation"],
    ),
    # The λ sweep trains too: every check of the grid's runs holds for its runs.
    "bn in the sweep with a last batch of one": (
        chain(mutate("capacity.scaling", ["bn"]), mutate("capacity.batch_size", 673)),
        ["capacity.batch_size", "bn"],
    ),
    "bn in the sweep with batches of one": (
        chain(mutate("capacity.scaling", ["inv", "bn"]), mutate("capacity.batch_size", 1)),
        ["capacity.batch_size"],
    ),
    "sweep conv on digits": (
        chain(mutate("capacity.arch", "conv"), mutate("arch_options.conv", {"stem_stride": 1})),
        ["capacity.arch", "digits"],
    ),
    "sweep dataset without a section": (
        mutate("capacity.dataset", "cifar10"),
        ["capacity.dataset", "datasets.cifar10"],
    ),
    "sweep stem stride larger than the image": (
        chain(
            CONV_ON_CIFAR,
            mutate("capacity.dataset", "cifar10"),
            mutate("capacity.arch", "conv"),
            mutate("arch_options.conv", {"stem_stride": 33}),
        ),
        ["arch_options.conv.stem_stride", "(capacity)"],
    ),
    "sweep conv without arch_options": (
        chain(
            CONV_ON_CIFAR,
            mutate("capacity.dataset", "cifar10"),
            mutate("capacity.arch", "conv"),
            mutate("arch_options.conv", None),
        ),
        ["capacity.arch", "arch_options.conv"],
    ),
}


def validation_error(config):
    """The message of the error common.smk's validation raises for ``config``, or None."""
    try:
        configcheck.validate(config, SCHEMA)
    except (ValueError, WorkflowError) as error:
        return str(error)
    return None


def assert_refused_naming(name, change, expected_words):
    """The default config changed by ``change`` is refused with every expected word."""
    message = validation_error(change(default_config()))
    assert message is not None, f"{name}: accepted"
    for word in expected_words:
        assert word in message, f"{name}: {word!r} not in {message!r}"


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_bad_config_is_refused_naming_the_key(name):
    assert_refused_naming(name, *BAD_CONFIGS[name])


#: Valid configs at the edges of what the checks allow.
EDGE_CONFIGS = {
    "orders just below the truncation depth": mutate("expansion.truncation.depth", 4),
    "fit range up to lambda_max": mutate("expansion.truncation.fit_max_lambda", 1.0),
    "smallest test fraction": mutate("datasets.digits.test_fraction", 10 / 1797),
    "bn with a last batch of two": mutate("grid.batch_size", [1345]),
    "equal C3 thresholds": mutate("claims.C3.stalled_below", 0.5),
    "all-diverging lr": mutate("grid.lr", [50.0]),
    "largest depth": mutate("grid.depth", [100_000]),
    "largest seed": mutate("grid.seed", [2**32 - 1]),
    "conv on cifar10": chain(
        CONV_ON_CIFAR, mutate("grid.dataset", ["cifar10"]), mutate("grid.arch", ["conv"])
    ),
    "C2 needs exactly the depths measured": mutate("claims.C2.min_depths", 7),
    "truncation depth one above the largest order": mutate("expansion.truncation.depth", 4),
    "smooth truncation towers beside a ReLU grid": mutate(
        "expansion.truncation.activations", ["relu", "tanh", "gelu"]
    ),
    "packed backend without compile or clipping": chain(
        mutate("capacity.clipped", None), mutate("training.pack_backend", "packed")
    ),
    "compile with the loop backend": mutate("training.compile", True),
    # Optional keys left out: every check must read them as their defaults.
    "no λ sweep": mutate("capacity", None),
    "no λ sweep and no GC": chain(mutate("capacity", None), mutate("training.gc", None)),
    "no packing section": mutate("training.packing", None),
    "no pack_backend": mutate("training.pack_backend", None),
    "no speed options": chain(
        mutate("training.bf16", None),
        mutate("training.channels_last", None),
        mutate("training.compile", None),
    ),
    "no gradient clipping key": mutate("capacity.clipped", None),
    "no lesion bound": lambda config: {
        **config,
        "expansion": {**config["expansion"], "lesion_max_modules": None},
    },
    "bn in the sweep with a last batch of two": chain(
        mutate("capacity.scaling", ["bn"]), mutate("capacity.batch_size", 1345)
    ),
}


@pytest.mark.parametrize("name", EDGE_CONFIGS)
def test_edge_config_is_accepted(name):
    assert validation_error(EDGE_CONFIGS[name](default_config())) is None


def test_default_configs_are_valid():
    for path in sorted((REPO / "config").glob("*.yaml")):
        assert validation_error(yaml.safe_load(path.read_text())) is None, path


@pytest.mark.workflow
@pytest.mark.parametrize(
    "name, words",
    [("unknown scaling", ["validating config"]), ("NaN lr", []), ("near-duplicate lr", [])],
)
def test_snakemake_refuses_a_bad_config_before_any_job(workflow, name, words):
    change, expected_words = BAD_CONFIGS[name]
    result = workflow.run("--dry-run", config=change(default_config()), check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    for word in [*words, *expected_words]:
        assert word in message, f"{name}: {word!r} not in the error message"
    assert not workflow.path("results").exists()
    assert "Job stats" not in message


@pytest.mark.workflow
def test_an_empty_config_file_is_refused(workflow):
    """``--configfile empty.yaml`` used to run the whole default silently."""
    path = workflow.path("config/empty.yaml")
    path.write_text("{}\n")
    result = workflow.run("--dry-run", "--configfile", str(path), check=False)
    assert result.returncode != 0
    assert "empty.yaml is empty" in result.stdout + result.stderr


def test_result_settings_leave_out_execution_settings_nested_ones_too():
    from resdepth import settings

    training = default_config()["training"]
    result = settings.result_settings(training)
    assert not {"device", "threads", "eval_batch_size", "checkpoint_every"} & set(result)
    assert result["gc"] == {k: v for k, v in training["gc"].items() if k != "chunk_size"}
    assert result["momentum"] == training["momentum"] and "chunk_size" in training["gc"]
    expansion = settings.result_settings(default_config()["expansion"], "expansion")
    assert expansion["max_order"] == 8 and "eval_batch_size" not in expansion


def test_split_and_batchnorm_checks_refuse_exactly_what_the_job_cannot_do():
    """The digits split and a BatchNorm batch fail in the job just past the limits the
    config check enforces, and work at them."""
    import torch
    from sklearn.model_selection import train_test_split

    from resdepth import data, models

    smallest = 10 / configcheck.DIGITS_IMAGES
    split = data.digits_tensors(smallest, split_seed=0)
    assert len(split["y_test"]) == 10
    assert len(split["y_train"]) == configcheck.n_train(
        {"datasets": {"digits": {"test_fraction": smallest}}}, "digits"
    )
    labels = torch.arange(configcheck.DIGITS_IMAGES) % 10
    with pytest.raises(ValueError):
        train_test_split(labels, test_size=9 / configcheck.DIGITS_IMAGES, stratify=labels)

    model = models.build_model("mlp", (8, 8), 10, 8, 2, "bn").train()
    model(torch.randn(2, 8, 8))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(torch.randn(1, 8, 8))


#: Every key of the default config that holds a count (dotted; lists count per item).
COUNT_KEYS = [
    "datasets.digits.split_seed",
    *(f"grid.{key}" for key in ("depth", "seed", "width", "epochs", "batch_size")),
    *(f"training.{key}" for key in ("eval_batch_size", "threads", "checkpoint_every")),
    *(f"training.gc.{key}" for key in ("every", "inputs", "probes", "chunk_size")),
    "training.packing.max_members",
    *(f"init_norms.{key}" for key in ("width", "depth", "seed", "batch_size")),
    *(f"expansion.{k}" for k in ("max_order", "batch_size", "eval_batch_size", "threads")),
    "expansion.lesion_max_modules",
    *(
        f"expansion.truncation.{key}"
        for key in ("width", "depth", "seeds", "orders", "batch_size", "lambda_steps")
    ),
    *(f"capacity.{k}" for k in ("depth", "width", "epochs", "batch_size", "lambda_count", "seed")),
    "claims.C1.orders",
    "claims.C2.min_depths",
    "claims.C5.truncation_orders",
    "arch_options.conv.stem_stride",
]


def at(config, dotted):
    """The value at a dotted key, or None where the config has no such section."""
    node = config
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def as_floats(node):
    """``node`` with every int (not bool) written as a float, as ``depth: 4.0`` is."""
    if isinstance(node, dict):
        return {key: as_floats(value) for key, value in node.items()}
    if isinstance(node, list):
        return [as_floats(value) for value in node]
    return float(node) if type(node) is int else node


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_whole_numbers_written_as_floats_are_counts_with_canonical_run_ids(name):
    """``grid.depth: [4.0]`` passed the schema (JSON Schema counts 4.0 as an integer),
    then crashed in the job under the run id ``...-n4.0-...``; the same in every
    section. Every count comes out an int, and the plan is the config's own."""
    from resdepth import grid, packs

    default = yaml.safe_load((REPO / "config" / name).read_text())
    floats = as_floats(default)
    assert isinstance(at(floats, "grid.depth")[0], float)
    assert validation_error(floats) is None
    present = [key for key in COUNT_KEYS if at(default, key) is not None]
    assert len(present) >= len(COUNT_KEYS) - 2
    for key in present:
        values = at(floats, key)
        for value in values if isinstance(values, list) else [values]:
            assert type(value) is int, f"{key}: {value!r}"
    assert floats == default
    assert list(grid.training_runs(floats)) == list(grid.training_runs(default))
    assert packs.training_packs(floats)[1] == packs.training_packs(default)[1]
    # Numbers that are not counts stay as written.
    assert floats["claims"]["C2"]["max_bounded_rel_norm"] == 10.0
    assert type(floats["claims"]["C2"]["max_bounded_rel_norm"]) is float
