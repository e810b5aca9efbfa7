rule track_cells:
    """Link the nuclei of successive frames into tracks with divisions (cytotrail.track)."""
    input:
        f"{RESULTS}/{{sample}}/labels.tif",
    output:
        tracks=f"{RESULTS}/{{sample}}/tracks.parquet",
        geff=directory(f"{RESULTS}/{{sample}}/lineages.geff"),
        fitted=report(
            f"{RESULTS}/{{sample}}/tracks.track.json",
            caption="../report/track_fitted.rst",
            category="Tracking",
            subcategory="{sample}",
            labels={
                "sample": "{sample}",
                "figure": "fitted motion and division model",
            },
        ),
    log:
        f"{RESULTS}/logs/track_cells/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/track_cells/{{sample}}.tsv"
    conda:
        "../envs/cytotrail.yaml"
    threads: threads_of("track_cells")
    resources:
        mem_mb=mem_mb_of("track_cells"),
        runtime=runtime_of("track_cells"),
    params:
        options=cli_flags(
            {
                "search_range_px": config["track"]["search_range_px"],
                "memory": config["track"]["memory"],
                "no_divisions": not config["track"]["divisions"],
            }
        ),
        version=VERSION,
    shell:
        "cytotrail track {input:q} -o {output.tracks:q} --geff {output.geff:q} "
        "--sample {wildcards.sample} "
        "{params.options} > {log:q} 2>&1"
