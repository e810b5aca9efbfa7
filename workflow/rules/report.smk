rule report_sample:
    """Segmentation and tracking QC figures, and a napari export, of one sample (cytotrail.report)."""
    input:
        image=lambda wildcards: samples.loc[wildcards.sample, "image"],
        frames=image_frames,
        labels=f"{RESULTS}/{{sample}}/labels.tif",
        tracks=f"{RESULTS}/{{sample}}/tracks.parquet",
        cells=lambda wildcards: cells_file(wildcards.sample) or [],
    output:
        segmentation=report(
            f"{RESULTS}/{{sample}}/report/segmentation.png",
            caption="../report/segmentation.rst",
            category="Segmentation",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "outlines"},
        ),
        worst=report(
            f"{RESULTS}/{{sample}}/report/worst_frames.png",
            caption="../report/worst_frames.rst",
            category="Segmentation",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "worst frames"},
        ),
        tracks=report(
            f"{RESULTS}/{{sample}}/report/tracks.png",
            caption="../report/tracks.rst",
            category="Tracking",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "trajectories"},
        ),
        lineages=report(
            f"{RESULTS}/{{sample}}/report/lineages.png",
            caption="../report/lineages.rst",
            category="Tracking",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "lineage trees"},
        ),
        napari_tracks=f"{RESULTS}/{{sample}}/report/napari_tracks.csv",
        napari_graph=f"{RESULTS}/{{sample}}/report/napari_graph.json",
    log:
        f"{RESULTS}/logs/report_sample/{{sample}}.log",
    conda:
        "../envs/cytotrail.yaml"
    threads: threads_of("report_sample")
    resources:
        mem_mb=mem_mb_of("report_sample"),
        runtime=runtime_of("report_sample"),
    params:
        channel=lambda wildcards: nuclear_channel(wildcards.sample),
        image=image_options,
        cells=lambda wildcards: cli_flags({"cells": cells_file(wildcards.sample)}),
        frames=config["report"]["frames"],
        outdir=lambda wildcards, output: Path(output.segmentation).parent,
        version=VERSION,
    shell:
        "cytotrail report sample {input.image:q} {input.labels:q} {input.tracks:q} "
        "-o {params.outdir:q} --sample {wildcards.sample} "
        "--channel {params.channel:q} --frames {params.frames} {params.image} {params.cells} > {log:q} 2>&1"


rule report_summary:
    """Cell-type figures and the per-sample summary of all samples (cytotrail.report)."""
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
        composition=report(
            f"{RESULTS}/report/composition.png",
            caption="../report/composition.rst",
            category="Cell types",
            labels={"figure": "composition"},
        ),
        timeseries=report(
            f"{RESULTS}/report/timeseries.png",
            caption="../report/timeseries.rst",
            category="Cell types",
            labels={"figure": "marker time series"},
        ),
        spatial=report(
            f"{RESULTS}/report/spatial.png",
            caption="../report/spatial.rst",
            category="Cell types",
            labels={"figure": "in space"},
        ),
        summary=report(
            f"{RESULTS}/report/summary.tsv",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "per sample"},
        ),
    log:
        f"{RESULTS}/logs/report_summary.log",
    conda:
        "../envs/cytotrail.yaml"
    threads: threads_of("report_summary")
    resources:
        mem_mb=mem_mb_of("report_summary"),
        runtime=runtime_of("report_summary"),
    params:
        outdir=lambda wildcards, output: Path(output.summary).parent,
        samples=SAMPLES,
        version=VERSION,
    shell:
        "cytotrail report summary {input:q} -o {params.outdir:q} --samples {params.samples:q} "
        "> {log:q} 2>&1"


rule record_provenance:
    """The configuration of the run and the versions of cytotrail, its dependencies and model."""
    output:
        config=report(
            f"{RESULTS}/provenance/config.yaml",
            caption="../report/config.rst",
            category="Provenance",
            labels={"file": "configuration"},
        ),
        versions=report(
            f"{RESULTS}/provenance/versions.tsv",
            caption="../report/versions.rst",
            category="Provenance",
            labels={"file": "versions"},
        ),
    log:
        f"{RESULTS}/logs/record_provenance.log",
    conda:
        "../envs/cytotrail.yaml"
    threads: threads_of("record_provenance")
    resources:
        mem_mb=mem_mb_of("record_provenance"),
        runtime=runtime_of("record_provenance"),
    params:
        config=json.dumps(config, sort_keys=True),
        model=cli_flags({"model": config["segment"]["model"]}),
        outdir=lambda wildcards, output: Path(output.config).parent,
        version=VERSION,
    shell:
        "cytotrail report provenance -o {params.outdir:q} --config {params.config:q} {params.model} "
        "> {log:q} 2>&1"


rule report_html:
    """The Snakemake HTML report of the finished run: every figure, table and run time."""
    input:
        [path for path in final_outputs() if not path.endswith("report.html")],
        config=f"{RESULTS}/provenance/config.yaml",
    output:
        f"{RESULTS}/report.html",
    log:
        f"{RESULTS}/logs/report_html.log",
    conda:
        "../envs/cytotrail.yaml"
    threads: threads_of("report_html")
    resources:
        mem_mb=mem_mb_of("report_html"),
        runtime=runtime_of("report_html"),
    params:
        snakefile=workflow.main_snakefile,
    shell:
        "CYTOTRAIL_NESTED=1 snakemake --snakefile {params.snakefile:q} "
        "--configfile {input.config:q} --nolock "
        "--report {output:q} > {log:q} 2>&1"
