# Training or fine-tuning the nuclei segmentation U-Net (cytotrail.segment.train).
# Not part of the default target: run `snakemake train_model` (or ask for its output).
# Keys under `train:` in the config; defaults are the recipe of the shipped model.
TRAIN_DEFAULTS = {
    "images": [],
    "labels": [],
    "manifest": None,
    "output": "resources/models/nuclei_unet",
    "init": None,
    "synthetic": 60,
    "synthetic_val": 10,
    "synthetic_weight": 0.35,
    "seed": 0,
    "steps": 2500,
    "batch_size": 8,
    "crop": 128,
    "lr": 0.002,
    "base": 16,
    "depth": 4,
}


def train_setting(key):
    return config.get("train", {}).get(key, TRAIN_DEFAULTS[key])


def train_inputs(wildcards):
    inputs = {"images": train_setting("images"), "labels": train_setting("labels")}
    if train_setting("manifest"):
        inputs["manifest"] = train_setting("manifest")
    if train_setting("init") and Path(train_setting("init")).exists():
        inputs["init"] = train_setting("init")
    return inputs


rule train_model:
    """Train the U-Net on image/label folder pairs plus synthetic frames; write a model folder."""
    input:
        unpack(train_inputs),
    output:
        directory(train_setting("output")),
    params:
        options=cli_flags(
            {
                key: train_setting(key)
                for key in ("init", "synthetic", "synthetic_val", "synthetic_weight", "seed",
                            "steps", "batch_size", "crop", "lr", "base", "depth")
            }
        ),
        data=lambda wildcards, input: cli_flags(
            {"images": input.images, "labels": input.labels, "manifest": input.get("manifest")}
        ),
    log:
        f"{RESULTS}/logs/train_model.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=240,
    shell:
        "cytotrail train -o {output:q} {params.data} {params.options} --threads {threads} "
        "> {log:q} 2>&1"
