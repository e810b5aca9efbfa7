rule make_demo:
    """Generate a synthetic demo sample (image plus ground truth) with cytotrail.synth."""
    output:
        image=f"{DEMO_DIR}/{{sample}}.ome.tif",
        labels=f"{DEMO_DIR}/truth/{{sample}}_labels.tif",
        tracks=f"{DEMO_DIR}/truth/{{sample}}_tracks.csv",
    log:
        "logs/make_demo/{sample}.log",
    conda:
        "../envs/cytotrail.yaml"
    threads: threads_of("make_demo")
    resources:
        mem_mb=mem_mb_of("make_demo"),
        runtime=runtime_of("make_demo"),
    params:
        options=lambda wildcards: cli_flags(
            {
                "frames": config["demo"]["frames"],
                "size": config["demo"]["size"],
                "cells": config["demo"]["cells"],
                "seed": config["demo"]["seed"] + SAMPLES.index(wildcards.sample),
            }
        ),
        outdir=lambda wildcards, output: Path(output.image).parent,
        version=VERSION,
    shell:
        "cytotrail demo {params.outdir:q} --samples {wildcards.sample} {params.options} > {log:q} 2>&1"
