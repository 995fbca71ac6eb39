"""Rule `cifar10`: the official archive → results/data/cifar10.{pt,json}."""

from resdepth import cifar10, data, jobs

jobs.log_to(snakemake.log[0])
# Only the tests' small archives set test_archive_md5; real runs check the official MD5.
expected_md5 = snakemake.params.test_archive_md5 or cifar10.ARCHIVE_MD5
tensors, extra = cifar10.prepared_tensors(snakemake.input.archive, expected_md5)
data.write_prepared(
    tensors, snakemake.output.tensors, snakemake.output.manifest, "cifar10", 10, **extra
)
