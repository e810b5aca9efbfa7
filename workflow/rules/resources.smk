# Execution settings of every rule, in one table: threads, memory and run time.
#
# Memory (mem_mb, MB) and run time (runtime, minutes) are `base + per MB x MB`, where MB is
# the size of the input uncompressed as float32: the sample's image ("sample", input_mb)
# or all samples' images ("all", total_input_mb); both are multiplied by the attempt
# number, so that a job retried after running out of memory or time (profile key
# `retries`) gets more. Snakemake sets OMP_NUM_THREADS (and MKL's, OpenBLAS's) to a job's
# threads; commands that take --threads get {threads} too (segment, train).
#
# These are the rules' defaults. A profile overrides them per rule (profiles/slurm,
# profiles/cluster-generic; a workflow profile in profiles/default would replace the
# `set-threads`/`set-resources` of the profile given with --profile, so it sets none):
#   set-threads: {segment_nuclei: 8}
#   set-resources: {segment_nuclei: {mem_mb: 16000, device: cuda, batch_size: 8}}
# or on the command line: --set-threads segment_nuclei=8 --set-resources segment_nuclei:device=cpu
#
# Segmentation's own execution settings are resources of rule segment_nuclei too (they
# change how fast it runs, not its labels, so changing them reruns nothing):
#   device      auto (CUDA, then MPS, then the CPU), cuda, mps or cpu
#   batch_size  frames (or tiles) per network batch
#   workers     threads turning network maps into labels beside the network; auto: 1 on
#               the CPU, beside a GPU the job's threads less one (at most 8)
# The config keys segment.device, segment.batch_size and segment.workers of earlier
# releases still set them (deprecated: cytotrail.deprecations).
# fmt: off
RESOURCES = {
    # rule:             (threads, mem_mb = base + per MB, runtime = base + per MB, MB of)
    "make_demo":         (1,      1000,     0,            10,     0,             None),
    "segment_nuclei":    (2,      2000,     6,            10,     1 / 20,        "sample"),
    "segment_cells":     (1,      1000,     3,            10,     1 / 50,        "sample"),
    "track_cells":       (1,      1000,     4,            10,     1 / 50,        "sample"),
    "quantify_cells":    (1,      1000,     3,            10,     1 / 50,        "sample"),
    "cluster_cells":     (2,      2000,     20,           15,     1,             "all"),
    "report_sample":     (1,      1000,     2,            10,     0,             "sample"),
    "report_summary":    (1,      2000,     10,           10,     0,             "all"),
    "record_provenance": (1,      1000,     0,            5,      0,             None),
    "report_html":       (1,      2000,     0,            10,     0,             None),
    "train_model":       (4,      8000,     0,            240,    0,             None),
}
# fmt: on
SEGMENT_EXECUTION = {"device": "auto", "batch_size": 4, "workers": "auto"}
SEGMENT_EXECUTION.update(EXECUTION_FROM_CONFIG)  # deprecated config keys, when given


def _input_size(of, wildcards):
    if of == "sample":
        return input_mb(wildcards.sample)
    return total_input_mb() if of == "all" else 0.0


def _formula(rule, column):
    base, per_mb, of = (
        RESOURCES[rule][column],
        RESOURCES[rule][column + 1],
        RESOURCES[rule][5],
    )
    return (
        lambda wildcards, attempt: int(base + per_mb * _input_size(of, wildcards))
        * attempt
    )


def threads_of(rule):
    """The rule's default threads (a profile's set-threads overrides them)."""
    return RESOURCES[rule][0]


def mem_mb_of(rule):
    """The rule's memory formula, in MB, a function of wildcards and attempt."""
    return _formula(rule, 1)


def runtime_of(rule):
    """The rule's run time formula, in minutes, a function of wildcards and attempt."""
    return _formula(rule, 3)
