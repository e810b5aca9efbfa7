rule report_sample:
    """Segmentation and tracking QC figures of one sample (cytotrail.report)."""
    input:
        image=lambda wildcards: samples.loc[wildcards.sample, "image"],
        labels=sample_file("labels.tif"),
        tracks=sample_file("tracks.parquet"),
    output:
        segmentation=report(
            sample_file("report/segmentation.png"),
            caption="../report/segmentation.rst",
            category="Segmentation",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "outlines"},
        ),
        tracks=report(
            sample_file("report/tracks.png"),
            caption="../report/tracks.rst",
            category="Tracking",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "trajectories"},
        ),
    params:
        channel=lambda wildcards: nuclear_channel(wildcards.sample),
        image=image_options,
        frames=config["report"]["frames"],
        outdir=lambda wildcards, output: Path(output.segmentation).parent,
        version=VERSION,
    conda:
        "../envs/cytotrail.yaml"
    log:
        f"{RESULTS}/logs/report_sample/{{sample}}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "cytotrail report sample {input.image:q} {input.labels:q} {input.tracks:q} "
        "-o {params.outdir:q} --sample {wildcards.sample} "
        "--channel {params.channel:q} --frames {params.frames} {params.image} > {log:q} 2>&1"


rule report_summary:
    """UMAP, marker heatmap and per-sample summary of all samples (cytotrail.report)."""
    input:
        f"{RESULTS}/cells.h5ad",
    output:
        umap=report(
            f"{RESULTS}/report/umap.png",
            caption="../report/umap.rst",
            category="Cell types",
            labels={"figure": "UMAP"},
        ),
        heatmap=report(
            f"{RESULTS}/report/heatmap.png",
            caption="../report/heatmap.rst",
            category="Cell types",
            labels={"figure": "marker heatmap"},
        ),
        summary=report(
            f"{RESULTS}/report/summary.tsv",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "per sample"},
        ),
    params:
        outdir=lambda wildcards, output: Path(output.summary).parent,
        version=VERSION,
    conda:
        "../envs/cytotrail.yaml"
    log:
        f"{RESULTS}/logs/report_summary.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "cytotrail report summary {input:q} -o {params.outdir:q} > {log:q} 2>&1"
