rule segment_nuclei:
    """Nuclei instance segmentation of every frame (cytotrail.segment)."""
    input:
        unpack(segment_inputs),
    output:
        labels=sample_file("labels.tif"),
        used=report(
            sample_file("labels.segment.json"),
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
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: int(2000 + 6 * input_mb(wildcards.sample))
        * attempt,
        runtime=lambda wildcards, attempt: int(10 + input_mb(wildcards.sample) / 20)
        * attempt,
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
                "diameter": config["segment"]["diameter"],
                "device": config["segment"]["device"],
                "batch_size": config["segment"]["batch_size"],
                "workers": config["segment"]["workers"],
                "labels": segment_inputs(wildcards).get("labels"),
            }
        ),
        version=VERSION,
    shell:
        "cytotrail segment {input.image:q} -o {output.labels:q} --channel {params.channel:q} "
        "{params.image} {params.options} > {log:q} 2>&1"


rule segment_cells:
    """Whole cells grown from the nuclei over segment.cells.channels (cytotrail.segment.cells)."""
    input:
        image=lambda wildcards: samples.loc[wildcards.sample, "image"],
        labels=sample_file("labels.tif"),
    output:
        sample_file("cells.tif"),
    log:
        f"{RESULTS}/logs/segment_cells/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segment_cells/{{sample}}.tsv"
    conda:
        "../envs/cytotrail.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: int(1000 + 3 * input_mb(wildcards.sample))
        * attempt,
        runtime=lambda wildcards, attempt: int(10 + input_mb(wildcards.sample) / 50)
        * attempt,
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
