"""Rule `download_cifar10`: the official archive → resources/cifar-10-python.tar.gz."""

from resdepth import cifar10, jobs

jobs.log_to(snakemake.log[0])
cifar10.download(cifar10.URL, snakemake.output[0])
