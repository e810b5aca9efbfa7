rule segment_nuclei:
    """Nuclei instance segmentation of every frame (cytotrail.segment)."""
    input:
        unpack(segment_inputs),
    output:
        labels=f"{RESULTS}/{{sample}}/labels.tif",
        used=report(
            f"{RESULTS}/{{sample}}/labels.segment.json",
            caption="../report/segment_used.rst",
            category="Segmentation",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "parameters used"},
        ),
    log:
        f"{RESULTS}/logs/segment_nuclei/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segment_nuclei/{{sample}}.tsv"
    conda:
        "../envs/cytotrail.yaml"
    threads: threads_of("segment_nuclei")
    resources:
        mem_mb=mem_mb_of("segment_nuclei"),
        runtime=runtime_of("segment_nuclei"),
        # execution settings (resources.smk): a profile's set-resources overrides them
        device=SEGMENT_EXECUTION["device"],
        batch_size=SEGMENT_EXECUTION["batch_size"],
        workers=SEGMENT_EXECUTION["workers"],
    params:
        channel=lambda wildcards: nuclear_channel(wildcards.sample),
        image=image_options,
        options=lambda wildcards: cli_flags(
            {
                "backend": config["segment"]["backend"],
                "model": (
                    config["segment"]["model"]
                    if config["segment"]["backend"] == "unet"
                    else None
                ),
                "diameter_px": config["segment"]["diameter_px"],
                "labels": segment_inputs(wildcards).get("labels"),
            }
        ),
        version=VERSION,
    shell:
        "cytotrail segment {input.image:q} -o {output.labels:q} --channel {params.channel:q} "
        "{params.image} {params.options} --threads {threads} --device {resources.device:q} "
        "--batch-size {resources.batch_size:q} --workers {resources.workers:q} > {log:q} 2>&1"


rule segment_cells:
    """Whole cells grown from the nuclei over segment.cells.channels (cytotrail.segment.cells)."""
    input:
        image=lambda wildcards: samples.loc[wildcards.sample, "image"],
        frames=image_frames,
        labels=f"{RESULTS}/{{sample}}/labels.tif",
    output:
        f"{RESULTS}/{{sample}}/cells.tif",
    log:
        f"{RESULTS}/logs/segment_cells/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segment_cells/{{sample}}.tsv"
    conda:
        "../envs/cytotrail.yaml"
    threads: threads_of("segment_cells")
    resources:
        mem_mb=mem_mb_of("segment_cells"),
        runtime=runtime_of("segment_cells"),
    params:
        image=image_options,
        options=lambda wildcards: cli_flags(
            {
                "channels": cell_channels(),
                "max_um": config["segment"]["cells"].get("max_um"),
                "min_um": config["segment"]["cells"].get("min_um"),
                "pixel_size_um": config["pixel_size_um"],
            }
        ),
        version=VERSION,
    shell:
        "cytotrail segment-cells {input.image:q} {input.labels:q} -o {output:q} "
        "{params.image} {params.options} > {log:q} 2>&1"
