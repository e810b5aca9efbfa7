rule cluster_cells:
    """All samples in one AnnData, clustered and annotated with cell types (cytotrail.cluster)."""
    input:
        cells=all_samples("cells.parquet"),
        tracks=all_samples("tracks.parquet"),
    output:
        f"{RESULTS}/cells.h5ad",
    params:
        markers=config["cluster"]["markers"],
        cell_types=json.dumps(config["cluster"]["cell_types"], sort_keys=True),
        options=cli_flags(
            {
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
    conda:
        "../envs/cytotrail.yaml"
    log:
        f"{RESULTS}/logs/cluster_cells.log",
    benchmark:
        f"{RESULTS}/benchmarks/cluster_cells.tsv"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: int(2000 + 20 * total_input_mb()) * attempt,
        runtime=lambda wildcards, attempt: int(15 + total_input_mb()) * attempt,
    shell:
        "cytotrail cluster {input.cells:q} --tracks {input.tracks:q} -o {output:q} "
        "--markers {params.markers:q} --cell-types {params.cell_types:q} {params.options} "
        "> {log:q} 2>&1"
