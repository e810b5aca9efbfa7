rule cluster_cells:
    """All samples in one AnnData, clustered and typed (cytotrail.cluster); no markers: unclustered, no types: clusters only."""
    input:
        cells=all_samples("cells.parquet"),
        tracks=all_samples("tracks.parquet"),
    output:
        f"{RESULTS}/cells.h5ad",
    log:
        f"{RESULTS}/logs/cluster_cells.log",
    benchmark:
        f"{RESULTS}/benchmarks/cluster_cells.tsv"
    conda:
        "../envs/cytotrail.yaml"
    threads: threads_of("cluster_cells")
    resources:
        mem_mb=mem_mb_of("cluster_cells"),
        runtime=runtime_of("cluster_cells"),
    params:
        options=cli_flags(
            {
                "markers": config["cluster"]["markers"] or None,
                "cell_types": (
                    json.dumps(config["cluster"]["cell_types"], sort_keys=True)
                    if config["cluster"].get("cell_types")
                    else None
                ),
                "gates": (
                    json.dumps(config["cluster"]["gates"], sort_keys=True)
                    if isinstance(config["cluster"].get("gates"), dict)
                    else config["cluster"].get("gates")
                ),
                "background": config["cluster"].get("background") or None,
                "drop_na": config["cluster"].get("drop_na", False),
                "feature": config["cluster"]["feature"],
                "transform": config["cluster"]["transform"],
                "cofactor": config["cluster"]["cofactor"],
                "resolution": config["cluster"]["resolution"],
                "n_neighbors": config["cluster"]["n_neighbors"],
                "level": config["cluster"]["level"],
                "no_umap": not config["cluster"]["umap"],
                "seed": config["cluster"]["seed"],
            }
        ),
        version=VERSION,
    shell:
        "cytotrail cluster {input.cells:q} --tracks {input.tracks:q} -o {output:q} "
        "--threads {threads} {params.options} > {log:q} 2>&1"
