rule quantify_cells:
    """Per-cell marker intensities and morphology (cytotrail.quantify)."""
    input:
        image=lambda wildcards: samples.loc[wildcards.sample, "image"],
        labels=sample_file("labels.tif"),
        cells=lambda wildcards: cells_file(wildcards.sample) or [],
    output:
        sample_file("cells.parquet"),
    log:
        f"{RESULTS}/logs/quantify_cells/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/quantify_cells/{{sample}}.tsv"
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
        cells=lambda wildcards: cli_flags({"cells": cells_file(wildcards.sample)}),
        options=cli_flags(
            {
                "markers": config["quantify"]["markers"],
                "statistics": config["quantify"]["statistics"],
                "compartments": config["quantify"]["compartments"],
                "cytoplasm_um": config["quantify"]["cytoplasm_um"],
                "background": config["quantify"]["background"],
                "pixel_size_um": config["pixel_size_um"],
            }
        ),
        version=VERSION,
    shell:
        "cytotrail quantify {input.image:q} {input.labels:q} -o {output:q} "
        "--sample {wildcards.sample} {params.image} {params.cells} {params.options} "
        "--threads {threads} > {log:q} 2>&1"
