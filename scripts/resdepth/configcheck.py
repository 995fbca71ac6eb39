"""What the config schema cannot say: every number is finite, and settings that depend on
each other agree.

common.smk runs ``validate`` (the schema, then ``check``) before planning anything: a
config that would fail inside a job, or write a silently wrong result (NaN slopes, a
dropped grid value), fails before any job runs, with the key that is wrong. Torch-free;
the tests call ``validate`` in process.
"""

import functools
import math
import re

import yaml

from resdepth import cost, grid

#: Images of scikit-learn's digits, split into train and test by ``test_fraction``.
DIGITS_IMAGES = 1797


class ConfigError(ValueError):
    """A config value that cannot be run as asked; the message starts with its key."""

    def __init__(self, key, problem):
        super().__init__(f"config key {key}: {problem}")


def validate(config, schema):
    """The config against the JSON schema file ``schema``, then ``check``. Whole numbers
    written as floats where the schema wants an integer (``depth: [4.0]``) are made ints
    in place first (``whole_numbers``)."""
    from snakemake.utils import validate as validate_schema

    whole_numbers(config, schema_at(schema))
    validate_schema(config, schema)
    check(config)


@functools.cache
def schema_at(path):
    """The schema file, parsed once per process (the tests validate hundreds of configs)."""
    with open(path) as file:
        return yaml.safe_load(file)


#: How a number looks as text: what YAML 1.1 leaves a string (``1e3``, ``2e-2``).
NUMBER_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def whole_numbers(node, schema, root=None, key=""):
    """Turn the integral floats in ``node`` where ``schema`` wants an integer into ints,
    in place, and refuse a number written as text, naming its key.

    JSON Schema counts 4.0 as an integer, so ``grid.depth: [4.0]`` passes the schema, then
    fails in the job (``range(4.0)``) under the run id ``...-n4.0-...``; as an int it is
    the run ``-n4-`` a user means. YAML 1.1 reads ``1e3`` (no dot) as the string "1e3".
    """
    root = root or schema
    schema = resolved(schema, root)
    types = schema_types(schema, root)
    if isinstance(node, dict):
        for name, value in node.items():
            if name in schema.get("properties", {}):
                sub_key = f"{key}.{name}" if key else name
                node[name] = whole_numbers(value, schema["properties"][name], root, sub_key)
    elif isinstance(node, list) and "items" in schema:
        for index, value in enumerate(node):
            node[index] = whole_numbers(value, schema["items"], root, f"{key}[{index}]")
    elif (
        isinstance(node, float)
        and node.is_integer()
        and types & {"integer", "number"} == {"integer"}
    ):
        return int(node)
    elif isinstance(node, str) and types & {"integer", "number"} and "string" not in types:
        if NUMBER_TEXT.fullmatch(node.strip()):
            value = float(node)
            number = int(value) if value.is_integer() and "number" not in types else value
            raise ConfigError(
                key,
                f"{node!r} is text, not a number (YAML reads an exponent without a dot, "
                f"like 1e3, as text): write {number!r}",
            )
    return node


def resolved(schema, root):
    """``schema`` with a local ``$ref`` (``#/$defs/depth``) followed."""
    while "$ref" in schema:
        node = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def schema_types(schema, root):
    """The JSON types a (resolved) schema admits, its ``anyOf`` branches included."""
    declared = schema.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    for branch in schema.get("anyOf", []):
        types |= schema_types(resolved(branch, root), root)
    return types


def check(config):
    """Raise ``ConfigError`` (or, for two runs with one id, ValueError) for the first
    problem found in a config that passed the schema."""
    check_finite(config)
    check_sections(config)
    grid.training_runs(config)  # distinct runs have distinct ids
    check_digits_split(config)
    check_conv_stem(config)
    check_batchnorm_batches(config)
    check_expansion(config)
    check_claims(config)
    check_grid_activation(config)
    check_packed_backend(config)
    check_recall(config)
    check_transformers(config)


def check_finite(node, key=""):
    """NaN and ±inf pass every ``type: number`` bound of a JSON schema (NaN compares
    false with everything); they would train "diverged" runs or write invalid JSON."""
    if isinstance(node, dict):
        for name, value in node.items():
            check_finite(value, f"{key}.{name}" if key else name)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_finite(value, f"{key}[{index}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(key, f"{node} is not a finite number")


def used_models(config):
    """``(key, dataset, arch)`` of every section that builds models."""
    used = [
        ("grid", dataset, arch)
        for dataset in config["grid"]["dataset"]
        for arch in config["grid"]["arch"]
    ]
    sections = {"init_norms": config["init_norms"]}
    sections["expansion.truncation"] = config["expansion"]["truncation"]
    if config.get("capacity"):
        sections["capacity"] = config["capacity"]
    studies = [
        (f"transformer.{name}", study["dataset"], "transformer")
        for name, study in (config.get("transformer") or {}).items()
    ]
    return used + [(key, s["dataset"], s["arch"]) for key, s in sections.items()] + studies


def check_sections(config):
    """Every data set and architecture in use has its own section: a missing dataset
    section cannot be prepared, a missing ``arch_options`` section would silently build
    the model with default options (for conv: stem stride 1, 4x the paper's compute)."""
    for key, dataset, arch in used_models(config):
        if dataset not in config["datasets"]:
            raise ConfigError(f"{key}.dataset", f"{dataset!r} needs a 'datasets.{dataset}' section")
        tokens = dataset in cost.TOKEN_DATASETS
        if (arch == "transformer") != tokens:
            raise ConfigError(
                f"{key}.arch",
                f"{arch!r} on {dataset!r}: transformers read token sequences and "
                f"{', '.join(cost.TOKEN_DATASETS)} is the token data set; mlp and conv "
                "towers read images",
            )
        if arch == "conv" and len(cost.DATASETS[dataset]["input_shape"]) != 3:
            raise ConfigError(
                f"{key}.arch", f"conv towers need C×H×W images; {dataset!r} has none (use mlp)"
            )
        if arch not in config["arch_options"]:
            raise ConfigError(
                f"{key}.arch",
                f"{arch!r} needs an 'arch_options.{arch}' section "
                f"(use '{arch}: {{}}' for the defaults)",
            )


def check_digits_split(config):
    """A stratified split needs at least one image per class on both sides."""
    digits = config["datasets"].get("digits")
    if not digits:
        return
    n_test = math.ceil(digits["test_fraction"] * DIGITS_IMAGES)
    classes = cost.DATASETS["digits"]["num_classes"]
    if min(n_test, DIGITS_IMAGES - n_test) < classes:
        raise ConfigError(
            "datasets.digits.test_fraction",
            f"{digits['test_fraction']} leaves {n_test} of {DIGITS_IMAGES} images for test; "
            f"both splits need at least {classes} (one per class)",
        )


def check_conv_stem(config):
    """The stem's stride must leave at least one pixel of every image it is used on."""
    stride = config["arch_options"].get("conv", {}).get("stem_stride", 1)
    for key, dataset, arch in used_models(config):
        if arch == "conv":
            smallest = min(cost.DATASETS[dataset]["input_shape"][1:])
            if stride > smallest:
                raise ConfigError(
                    "arch_options.conv.stem_stride",
                    f"{stride} exceeds the {smallest}-pixel images of {dataset!r} ({key})",
                )


def n_train(config, dataset):
    """Training images (or sequences) of a data set under this config."""
    if dataset == "digits":
        test_fraction = config["datasets"]["digits"]["test_fraction"]
        return DIGITS_IMAGES - math.ceil(test_fraction * DIGITS_IMAGES)
    return cost.dataset_info(dataset, config["datasets"])["n_train"]


def check_batchnorm_batches(config):
    """An MLP's BatchNorm cannot normalise a batch of one image: with ``bn`` no training
    batch (the epoch's last included), no init-norm batch and no expansion calibration
    batch may hold a single image."""
    single = "a batch of one image, which the bn scaling cannot normalise"
    grid_runs = grid.grid_runs(config)
    bn_runs = {
        run_id: cell
        for run_id, cell in grid.training_runs(config).items()
        if (cell["scaling"], cell["arch"]) == ("bn", "mlp")
    }
    for run_id, cell in bn_runs.items():
        images = n_train(config, cell["dataset"])
        if cell["batch_size"] == 1 or images % cell["batch_size"] == 1:
            raise ConfigError(
                "grid.batch_size" if run_id in grid_runs else "capacity.batch_size",
                f"{cell['batch_size']} with {images} {cell['dataset']} training images "
                f"leaves {single}",
            )
    norms = config["init_norms"]
    if (norms["batch_size"], norms["arch"]) == (1, "mlp") and "bn" in norms["scaling"]:
        raise ConfigError("init_norms.batch_size", f"1 is {single}")
    if config["expansion"]["batch_size"] == 1 and bn_runs.keys() & grid_runs.keys():
        raise ConfigError("expansion.batch_size", f"1 is {single}")


def check_expansion(config):
    """The truncation study needs orders below its depth (an order-K truncation of a
    tower of K or fewer modules is exact: no error to fit a slope to) and a fit range
    inside its λ range."""
    truncation = config["expansion"]["truncation"]
    key = "expansion.truncation"
    if max(truncation["orders"]) >= truncation["depth"]:
        raise ConfigError(
            f"{key}.orders",
            f"every order must be below {key}.depth ({truncation['depth']}): a truncation "
            f"at order {max(truncation['orders'])} is exact, its error has no slope",
        )
    low, fit, high = (truncation[k] for k in ("lambda_min", "fit_max_lambda", "lambda_max"))
    if not low < fit <= high:
        raise ConfigError(
            f"{key}.fit_max_lambda",
            f"need lambda_min < fit_max_lambda <= lambda_max, got {low}, {fit}, {high}",
        )


def check_claims(config):
    """Thresholds that can be met, about quantities the config measures."""
    claims, expansion = config["claims"], config["expansion"]
    c3 = claims["C3"]
    if c3["stalled_below"] > c3["trained_above"]:
        raise ConfigError(
            "claims.C3.stalled_below",
            f"{c3['stalled_below']} is above claims.C3.trained_above ({c3['trained_above']}):"
            " a run would be both trained and stalled",
        )
    unmeasured = sorted(set(claims["C1"]["orders"]) - set(expansion["truncation"]["orders"]))
    if unmeasured:
        raise ConfigError(
            "claims.C1.orders",
            f"{unmeasured} not in expansion.truncation.orders, which the study measures",
        )
    depths = len(set(config["init_norms"]["depth"]))
    if depths < claims["C2"]["min_depths"]:
        raise ConfigError(
            "claims.C2.min_depths",
            f"{claims['C2']['min_depths']} is more than the {depths} distinct init_norms.depth "
            "values measured: C2's growth rate could never be fitted",
        )
    too_high = [k for k in claims["C5"]["truncation_orders"] if k > expansion["max_order"]]
    if too_high:
        raise ConfigError(
            "claims.C5.truncation_orders",
            f"{too_high} above expansion.max_order ({expansion['max_order']}), "
            "the highest order measured",
        )


def check_packed_backend(config):
    """The packed backend steps a pack as one model: one gradient norm would mix its
    members, so it cannot clip each member's gradient as a run alone would; and it
    compiles nothing (``training.compile`` wraps a lone run's branches) and builds no
    transformer."""
    if config["training"].get("pack_backend") != "packed":
        return
    if (config.get("capacity") or {}).get("clipped"):
        raise ConfigError(
            "capacity.clipped",
            "not supported with training.pack_backend: packed (use loop, or no clipping)",
        )
    if config["training"].get("compile"):
        raise ConfigError(
            "training.compile",
            "not supported with training.pack_backend: packed (use loop, or compile: false)",
        )
    if "transformer" in config["grid"]["arch"]:
        raise ConfigError(
            "training.pack_backend",
            "packed builds grouped MLP and conv towers only; train transformers with loop",
        )


def check_grid_activation(config):
    """The study of trained runs (C5) splits them into paths, which freeze ReLU masks:
    a smooth grid tower is refused before it is trained (smooth towers are C1's
    truncation control, ``expansion.truncation.activations``). Transformers are exempt:
    their path terms freeze attention patterns, LayerNorm scales and activation gates
    (resdepth.expansion), whatever the activation."""
    for arch in sorted(set(config["grid"]["arch"]) - {"transformer"}):
        if config["arch_options"].get(arch, {}).get("activation", "relu") != "relu":
            raise ConfigError(
                f"arch_options.{arch}.activation",
                "the expansion study of trained runs needs ReLU towers (path terms freeze "
                "ReLU masks); use smooth activations in expansion.truncation.activations",
            )


def check_recall(config):
    """Every example needs ``pairs`` distinct keys."""
    recall = config["datasets"].get("recall")
    if recall and recall["pairs"] > recall["keys"]:
        raise ConfigError(
            "datasets.recall.pairs",
            f"{recall['pairs']} pairs need as many distinct keys; keys is {recall['keys']}",
        )


def transformer_uses(config):
    """``(key, dataset, widths, scalings, norms)`` of every section that builds transformers;
    ``norms`` None where the section follows ``arch_options.transformer.norm``."""
    uses = []
    if "transformer" in config["grid"]["arch"]:
        for dataset in config["grid"]["dataset"]:
            uses.append(("grid", dataset, config["grid"]["width"], config["grid"]["scaling"], None))
    capacity = config.get("capacity")
    if capacity and capacity["arch"] == "transformer":
        uses.append(
            ("capacity", capacity["dataset"], [capacity["width"]], capacity["scaling"], None)
        )
    for name, study in (config.get("transformer") or {}).items():
        scalings = study.get("scaling", [1.0])  # radius and truncation: a common λ
        uses.append(
            (f"transformer.{name}", study["dataset"], [study["width"]], scalings, study["norm"])
        )
    return uses


def check_transformers(config):
    """A transformer's heads split its width, its position embedding holds the whole
    sequence, ``bn`` (pre-LN at λ = 1, the normalised reference) has its LayerNorms, and
    the truncation study has orders below its number of modules (2 per block)."""
    options = config["arch_options"].get("transformer")
    uses = transformer_uses(config)
    if not uses:
        return
    key = "arch_options.transformer"
    for section, dataset, widths, scalings, norms in uses:
        for width in widths:
            if width % options["heads"]:
                raise ConfigError(
                    f"{key}.heads",
                    f"{options['heads']} heads do not divide the width {width} ({section})",
                )
        length = cost.dataset_info(dataset, config["datasets"])["input_shape"][0]
        if options["context"] < length:
            raise ConfigError(
                f"{key}.context",
                f"{options['context']} positions are fewer than the {length} tokens of a "
                f"{dataset!r} sequence ({section})",
            )
        norms = norms or [options.get("norm")]
        if "bn" in scalings and "none" in norms:
            raise ConfigError(
                f"{section}.norm" if section.startswith("transformer.") else f"{key}.norm",
                f"none with the bn scaling ({section}): bn is the pre-LN transformer at λ = 1; "
                "leave norm unset (bn gets pre-LN, the other scalings none) or drop bn",
            )
    truncation = (config.get("transformer") or {}).get("truncation")
    if truncation:
        section, modules = "transformer.truncation", 2 * truncation["depth"]
        if max(truncation["orders"]) >= modules:
            raise ConfigError(
                f"{section}.orders",
                f"every order must be below the {modules} modules of {truncation['depth']} "
                "blocks: a truncation at that order is exact, its error has no slope",
            )
        low, fit, high = (truncation[k] for k in ("lambda_min", "fit_max_lambda", "lambda_max"))
        if not low < fit <= high:
            raise ConfigError(
                f"{section}.fit_max_lambda",
                f"need lambda_min < fit_max_lambda <= lambda_max, got {low}, {fit}, {high}",
            )
