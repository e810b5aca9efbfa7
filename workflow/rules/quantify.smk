rule quantify_cells:
    """Per-cell marker intensities and morphology (cytotrail.quantify)."""
    input:
        image=lambda wildcards: samples.loc[wildcards.sample, "image"],
        frames=image_frames,
        labels=f"{RESULTS}/{{sample}}/labels.tif",
        cells=lambda wildcards: cells_file(wildcards.sample) or [],
    output:
        f"{RESULTS}/{{sample}}/cells.parquet",
    log:
        f"{RESULTS}/logs/quantify_cells/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/quantify_cells/{{sample}}.tsv"
    conda:
        "../envs/cytotrail.yaml"
    threads: threads_of("quantify_cells")
    resources:
        mem_mb=mem_mb_of("quantify_cells"),
        runtime=runtime_of("quantify_cells"),
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
