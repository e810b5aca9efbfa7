"""The real Snakemake workflow on a tiny demo: full run, reruns, lint, bad configurations."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from conftest import ROOT, SAMPLES, planned_jobs, prepare_demo, snakemake, write_config, write_samples

pytestmark = pytest.mark.workflow

PER_SAMPLE = {"make_demo", "segment_nuclei", "track_cells", "quantify_cells", "report_sample"}
# joint steps that follow any change; provenance records the configuration, so a config change reruns it
JOINT = {"cluster_cells": 1, "report_summary": 1, "report_html": 1, "all": 1}


def mtimes(workdir):
    return {
        p.relative_to(workdir): p.stat().st_mtime_ns
        for p in (workdir / "results").rglob("*")
        if p.is_file() and "logs" not in p.parts
    }


def test_dry_run_plans_every_stage_for_every_sample(tmp_path):
    prepare_demo(tmp_path)
    jobs = planned_jobs(tmp_path)
    assert {rule: jobs[rule] for rule in PER_SAMPLE} == {rule: 2 for rule in PER_SAMPLE}
    assert jobs["cluster_cells"] == jobs["report_summary"] == 1


def test_run_produces_every_output(demo_run):
    import anndata

    from cytotrail import io

    for sample in SAMPLES:
        labels = io.read_labels(demo_run / "results" / sample / "labels.tif")
        assert labels.shape == (5, 96, 96) and labels.dtype == np.uint32
        tracks = io.read_table(demo_run / "results" / sample / "tracks.parquet")
        assert {"sample", "frame", "label", "track_id", "parent_track_id", "y", "x"} <= set(tracks)
        cells = io.read_table(demo_run / "results" / sample / "cells.parquet")
        assert len(cells) == len(tracks) == sum(len(np.unique(f)) - 1 for f in labels)
        for name in ("segmentation.png", "tracks.png"):
            assert (demo_run / "results" / sample / "report" / name).stat().st_size > 1000
        # what segmentation used and what tracking fitted, saved beside the outputs
        used = json.loads((demo_run / "results" / sample / "labels.segment.json").read_text())
        assert used["diameter_source"] in {"given", "estimated", "per frame"}
        assert (
            used["backend"]
            == yaml.safe_load((demo_run / "config" / "config.yaml").read_text())["segment"]["backend"]
        )
        fitted = json.loads((demo_run / "results" / sample / "tracks.track.json").read_text())
        assert fitted["search_range_px"] > 0 and fitted["n_tracks"] == tracks["track_id"].nunique()
    adata = anndata.read_h5ad(demo_run / "results" / "cells.h5ad")
    assert {"sample", "frame", "label", "track_id", "leiden", "cell_type"} <= set(adata.obs)
    assert adata.obsm["spatial"].shape == (adata.n_obs, 2)
    assert set(adata.obs["sample"]) == set(SAMPLES)
    assert (
        list(adata.var_names)
        == yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["cluster"]["markers"]
    )
    summary = io.read_table(demo_run / "results" / "report" / "summary.tsv")
    assert list(summary["sample"]) == SAMPLES


def test_second_run_does_nothing(demo_run):
    assert planned_jobs(demo_run) == {}


def test_cluster_parameter_reruns_only_clustering(demo_copy):
    demo_run = demo_copy
    write_config(demo_run, **{"cluster.resolution": 0.5})
    assert planned_jobs(demo_run) == {**JOINT, "record_provenance": 1}
    before = mtimes(demo_run)
    snakemake(demo_run)
    after = mtimes(demo_run)
    changed = {str(p) for p in before if before[p] != after[p]}
    assert "results/cells.h5ad" in changed
    assert not any(p.startswith(tuple(f"results/{s}/" for s in SAMPLES)) for p in changed)


def test_segmentation_parameter_reruns_every_sample(demo_copy):
    demo_run = demo_copy
    write_config(demo_run, **{"segment.diameter_px": 9.0})
    jobs = planned_jobs(demo_run)
    assert "make_demo" not in jobs
    for rule in PER_SAMPLE - {"make_demo"}:
        assert jobs[rule] == 2, jobs
    assert jobs["cluster_cells"] == 1


def test_old_config_keys_run_with_one_message_each_and_moving_them_reruns_nothing(tmp_path):
    """segment.diameter, track.search_range and segment.device/batch_size/workers of earlier
    releases: the run uses them, says once per key where they went; written the new way (keys
    renamed, execution settings in the profile), nothing reruns."""
    old = {
        "segment.diameter": 9.0,
        "segment.device": "cpu",
        "segment.batch_size": 2,
        "segment.workers": None,
        "track.search_range": 6.0,
    }
    prepare_demo(tmp_path, **old)
    config = yaml.safe_load((tmp_path / "config" / "config.yaml").read_text())
    del config["segment"]["diameter_px"], config["track"]["search_range_px"]  # a config of 0.1
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path)  # the whole run: the nested report run reads the config too
    out = proc.stdout + proc.stderr
    for key in old:
        assert out.count(f"config key `{key}` is deprecated") == 1, out[-3000:]
    used = json.loads((tmp_path / "results" / "s1" / "labels.segment.json").read_text())
    assert (used["diameter_px"], used["diameter_source"]) == (9.0, "given")
    fitted = json.loads((tmp_path / "results" / "s1" / "tracks.track.json").read_text())
    assert fitted["search_range_px"] == 6.0 and not fitted["search_range_adaptive"]
    log = (tmp_path / "results" / "logs" / "segment_nuclei" / "s1.log").read_text()
    assert "deprecated" not in log  # said by the run, once, not by each job
    provenance = yaml.safe_load((tmp_path / "results" / "provenance" / "config.yaml").read_text())
    assert provenance["segment"]["diameter_px"] == 9.0 and "diameter" not in provenance["segment"]
    assert provenance["track"]["search_range_px"] == 6.0 and "device" not in provenance["segment"]
    new = write_config(tmp_path, **{"segment.diameter_px": 9.0, "track.search_range_px": 6.0})
    assert "device" not in new["segment"] and "diameter" not in new["segment"]
    moved = ("--set-resources", "segment_nuclei:device=cpu", "segment_nuclei:batch_size=2")
    proc = snakemake(tmp_path, "--dry-run", *moved)
    out = proc.stdout + proc.stderr
    assert "Nothing to be done" in out and "deprecated" not in out, out[-3000:]


def test_config_with_old_and_new_name_of_a_key_is_refused_naming_both(tmp_path):
    prepare_demo(tmp_path, **{"segment.diameter": 9.0, "segment.diameter_px": 12.0})
    _fails_before_any_job(tmp_path, "`segment.diameter` and `segment.diameter_px` are both given")


def test_profile_sets_segmentations_threads_device_and_batch_size(tmp_path):
    """Execution settings reach the command from the rule defaults and a profile's overrides."""
    prepare_demo(tmp_path)
    proc = snakemake(tmp_path, "--dry-run", "--printshellcmds", "results/s1/labels.tif")
    (line,) = [x for x in (proc.stdout + proc.stderr).splitlines() if "cytotrail segment " in x]
    assert "--threads 2 --device auto --batch-size 4 --workers auto" in line
    profile = tmp_path / "myprofile"
    profile.mkdir()
    (profile / "config.yaml").write_text(
        "set-threads: {segment_nuclei: 1}\n"  # the tests run with --cores 2
        "set-resources: {segment_nuclei: {device: cpu, batch_size: 8, workers: 2}}\n"
    )
    proc = snakemake(
        tmp_path, "--dry-run", "--printshellcmds", "--profile", str(profile), "results/s1/labels.tif"
    )
    (line,) = [x for x in (proc.stdout + proc.stderr).splitlines() if "cytotrail segment " in x]
    assert "--threads 1 --device cpu --batch-size 8 --workers 2" in line


def test_changed_image_reruns_that_sample_only(demo_copy):
    """A new version of one sample's image (Snakemake compares checksums: a bare touch is no change)."""
    from cytotrail import io

    demo_run = demo_copy
    image = demo_run / "resources" / "demo" / "s1.ome.tif"
    pixels, names = io.read_image(image)
    pixels[0, 0, 0, 0] += 1
    io.write_image(image, pixels, channel_names=names)
    jobs = planned_jobs(demo_run)
    assert jobs == {"segment_nuclei": 1, "quantify_cells": 1, "track_cells": 1, "report_sample": 1, **JOINT}
    before = mtimes(demo_run)
    snakemake(demo_run)
    after = mtimes(demo_run)
    changed = {str(p) for p in before if before[p] != after[p]}
    assert "results/s1/labels.tif" in changed and "results/cells.h5ad" in changed
    assert not any(p.startswith("results/s2/") for p in changed)
    assert planned_jobs(demo_run) == {}


def test_lint_is_clean():
    proc = snakemake(ROOT, "--lint")
    assert "Congratulations" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------
# bad input: one clear message before any job runs


def _fails_before_any_job(workdir, *needles):
    proc = snakemake(workdir, "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for needle in needles:
        assert needle in out, out[-3000:]
    assert not (workdir / "results").exists()
    return out


def test_missing_image_is_named(tmp_path):
    write_config(tmp_path)
    write_samples(tmp_path, [("s1", "data/missing.tif")])
    _fails_before_any_job(tmp_path, "data/missing.tif", "s1")


def test_missing_model_folder_is_named(tmp_path):
    prepare_demo(tmp_path, **{"segment.backend": "unet", "segment.model": "models/typo"})
    _fails_before_any_job(tmp_path, "segment.model", "models/typo")


def test_sample_name_with_shell_characters_is_refused(tmp_path):
    write_config(tmp_path)
    write_samples(tmp_path, [("bad name;rm", "resources/demo/x.ome.tif")])
    _fails_before_any_job(tmp_path, "bad name;rm")


def test_config_key_of_wrong_type_is_named(tmp_path):
    write_config(tmp_path, **{"track.memory": "two"})
    write_samples(tmp_path, [("s1", "resources/demo/s1.ome.tif")])
    _fails_before_any_job(tmp_path, "memory")


def test_wrong_channel_name_is_named(tmp_path):
    from cytotrail.synth import make_timelapse, write_dataset

    data = make_timelapse(n_frames=2, shape=(64, 64), n_cells=4, seed=5)
    write_dataset(tmp_path / "data", data, sample="mine")
    write_config(tmp_path, nuclear_channel="Hoechst")
    write_samples(tmp_path, [("mine", "data/mine.ome.tif")])
    _fails_before_any_job(tmp_path, "Hoechst", "mine", "DNA")


def test_corrupt_tiff_is_named(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "broken.tif").write_bytes(b"II*\x00garbage" * 10)
    write_config(tmp_path)
    write_samples(tmp_path, [("broken", "data/broken.tif")])
    _fails_before_any_job(tmp_path, "data/broken.tif", "not a readable TIFF")


def test_user_tiff_without_metadata_runs_with_axes_and_names(tmp_path):
    """A plain TYX stack plus a CYX marker image is not a use case; a plain TCYX TIFF is."""
    import tifffile

    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=3, shape=(80, 80), n_cells=8, seed=6)
    (tmp_path / "data").mkdir()
    tifffile.imwrite(tmp_path / "data" / "plain.tif", data.image)  # no OME metadata
    write_config(tmp_path)
    rows = "sample\timage\tchannel_names\n" + f"plain\tdata/plain.tif\t{','.join(data.channel_names)}\n"
    (tmp_path / "config" / "samples.tsv").write_text(rows)
    snakemake(tmp_path, f"{'results'}/plain/cells.parquet")
    from cytotrail import io

    cells = io.read_table(tmp_path / "results" / "plain" / "cells.parquet")
    assert len(cells) > 0 and "CD3_cell_mean" in cells


def test_folder_of_frames_is_a_sample_and_an_edited_frame_reruns_it(tmp_path):
    """A Cell Tracking Challenge sequence (01/t000.tif, ...) as a sample's image."""
    import tifffile

    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=3, shape=(80, 80), n_cells=8, seed=7)
    frames = tmp_path / "data" / "01"
    frames.mkdir(parents=True)
    for t, frame in enumerate(data.image[:, 0]):
        tifffile.imwrite(frames / f"t{t:03d}.tif", frame)
    write_config(tmp_path, **{"nuclear_channel": "ch0", "cluster.markers": [], "cluster.cell_types": {}})
    (tmp_path / "config" / "samples.tsv").write_text("sample\timage\nseq\tdata/01\n")
    snakemake(tmp_path, "results/seq/tracks.parquet")
    from cytotrail import io

    assert io.read_labels(tmp_path / "results" / "seq" / "labels.tif").shape == (3, 80, 80)
    edited = data.image[1, 0].copy()
    edited[0, 0] += 1
    tifffile.imwrite(frames / "t001.tif", edited)
    jobs = planned_jobs(tmp_path, "results/seq/tracks.parquet")
    assert jobs == {"segment_nuclei": 1, "track_cells": 1}


def _copy_workflow(tmp_path):
    """A private copy of the workflow definition, to edit."""
    import shutil

    copy = tmp_path / "workflow-copy"
    copy.mkdir()
    shutil.copy(ROOT / "Snakefile", copy / "Snakefile")
    shutil.copytree(ROOT / "workflow", copy / "workflow")
    shutil.copytree(ROOT / "profiles", copy / "profiles")
    return copy


def test_changed_rule_code_reruns_that_rule_and_downstream(demo_copy, tmp_path):
    copy = _copy_workflow(tmp_path)
    rules = copy / "workflow" / "rules" / "track.smk"
    rules.write_text(rules.read_text().replace("{params.options} >", "{params.options} --memory 3 >"))
    jobs = planned_jobs(demo_copy, "--snakefile", str(copy / "Snakefile"))
    assert jobs["track_cells"] == 2 and "segment_nuclei" not in jobs and "quantify_cells" not in jobs
    assert jobs["cluster_cells"] == 1 and jobs["report_sample"] == 2


def test_new_package_version_reruns_everything(demo_copy, tmp_path):
    copy = _copy_workflow(tmp_path)
    common = copy / "workflow" / "rules" / "common.smk"
    common.write_text(common.read_text().replace("VERSION = cytotrail.__version__", 'VERSION = "99.0"'))
    jobs = planned_jobs(demo_copy, "--snakefile", str(copy / "Snakefile"))
    for rule in ("make_demo", "segment_nuclei", "track_cells", "quantify_cells", "report_sample"):
        assert jobs[rule] == 2, jobs


def test_segmentation_model_from_train_model_is_trained_first(tmp_path):
    prepare_demo(
        tmp_path,
        **{
            "segment.backend": "unet",
            "segment.model": "resources/models/mine",
            "train.output": "resources/models/mine",
        },
    )
    jobs = planned_jobs(tmp_path)
    assert jobs["train_model"] == 1 and jobs["segment_nuclei"] == 2


def test_retrained_model_folder_reruns_segmentation(tmp_path):
    """The human-in-the-loop path: fine-tune the model folder in place, rerun, segmentation follows."""
    import shutil

    from cytotrail.segment.model import load_model, model_dir, save_model

    folder = tmp_path / "models" / "mine"
    shutil.copytree(model_dir(None), folder)
    prepare_demo(tmp_path, **{"segment.backend": "unet", "segment.model": "models/mine"})
    snakemake(tmp_path)
    assert planned_jobs(tmp_path) == {}
    net, config, thresholds = load_model(folder)
    save_model(folder, net, config, dict(thresholds, seed=thresholds["seed"] + 0.05))  # "retrained"
    jobs = planned_jobs(tmp_path)
    assert jobs["segment_nuclei"] == 2 and "make_demo" not in jobs, jobs


def test_nested_report_run_leaves_the_outer_runs_locks_alone(demo_run):
    """The report step's nested `snakemake --report` removed the outer run's locks on every run."""
    log = (demo_run / "results" / "logs" / "report_html.log").read_text()
    assert "removed the stale locks" not in log
    assert not list((demo_run / ".snakemake" / "cytotrail-owners").glob("*.json"))  # all exited


def test_outputs_are_readable_by_the_group_under_a_group_umask(demo_run):
    """Outputs were 0600 whatever the umask (mkstemp's mode); the tests run under umask 022 or 002."""
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (demo_run / "results").rglob("*"):
        if path.is_file() and "logs" not in path.parts and "benchmarks" not in path.parts:
            assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
