# Seconds of work, and downloads need the internet: on a cluster, run data preparation
# where Snakemake runs instead of submitting it.
localrules:
    digits,
    recall,
    download_cifar10,
    cifar10,


rule digits:
    """scikit-learn's bundled 8x8 digits: stratified split, standardised, as tensors."""
    input:
        lib("prepare_digits"),
    output:
        tensors="results/data/digits.pt",
        manifest="results/data/digits.json",
    log:
        "results/logs/digits.log",
    benchmark:
        "results/benchmarks/digits.tsv"
    conda:
        "../../envs/resdepth.yaml"
    params:
        settings=config["datasets"].get("digits"),
    script:
        "../../scripts/prepare_digits.py"


rule download_cifar10:
    """The official CIFAR-10 archive, when the config names none: checksummed, renamed
    into place only when complete. No code inputs: the archive is what its checksum
    says, whichever code fetched it."""
    output:
        "resources/cifar-10-python.tar.gz",
    log:
        "results/logs/download_cifar10.log",
    benchmark:
        "results/benchmarks/download_cifar10.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/download_cifar10.py"


rule cifar10:
    """CIFAR-10 from the official archive: uint8 images, labels, train-split channel stats."""
    input:
        archive=cifar10_archive,
        code=lib("prepare_cifar10"),
    output:
        tensors="results/data/cifar10.pt",
        manifest="results/data/cifar10.json",
    log:
        "results/logs/cifar10.log",
    benchmark:
        "results/benchmarks/cifar10.tsv"
    conda:
        "../../envs/resdepth.yaml"
    resources:
        mem_mb=2000,
    params:
        test_archive_md5=cifar10_test_archive_md5,
    script:
        "../../scripts/prepare_cifar10.py"


rule recall:
    """Synthetic associative recall (issue 20's transformers): generated from a seed, no
    download; token ids and labels as tensors."""
    input:
        lib("prepare_recall"),
    output:
        tensors="results/data/recall.pt",
        manifest="results/data/recall.json",
    log:
        "results/logs/recall.log",
    benchmark:
        "results/benchmarks/recall.tsv"
    conda:
        "../../envs/resdepth.yaml"
    params:
        settings=config["datasets"].get("recall"),
    script:
        "../../scripts/prepare_recall.py"
