# Training or fine-tuning the nuclei segmentation U-Net (cytotrail.segment.train).
# Not part of the default target: run `snakemake train_model` (or ask for its output).
# Keys under `train:` in the config (see the schema); their defaults are `cytotrail train`'s.
rule train_model:
    """Train the U-Net on image/label folder pairs plus synthetic frames; write a model folder."""
    input:
        unpack(train_inputs),
    output:
        directory(config["train"]["output"]),
    log:
        f"{RESULTS}/logs/train_model.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model.tsv"
    conda:
        "../envs/cytotrail.yaml"
    threads: threads_of("train_model")
    resources:
        mem_mb=mem_mb_of("train_model"),
        runtime=runtime_of("train_model"),
    params:
        options=cli_flags(
            {
                key: config["train"][key]
                for key in (
                    "init",
                    "synthetic",
                    "synthetic_val",
                    "synthetic_weight",
                    "seed",
                    "steps",
                    "batch_size",
                    "crop",
                    "lr",
                    "base",
                    "depth",
                )
            }
        ),
        data=lambda wildcards, input: cli_flags(
            {
                "images": input.images,
                "labels": input.labels,
                "manifest": input.get("manifest"),
            }
        ),
    shell:
        "cytotrail train -o {output:q} {params.data} {params.options} --threads {threads} "
        "> {log:q} 2>&1"
