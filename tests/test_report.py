"""The QC figures, and the HTML report opened in a real (headless) Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, prepare_demo, snakemake

from cytotrail import report

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def test_frame_qc_flags_the_odd_frame():
    from cytotrail.synth import make_timelapse

    labels = make_timelapse(n_frames=6, shape=(96, 96), n_cells=12, seed=4).labels.copy()
    labels[3] = 0
    labels[3, 10:12, 10:12] = 1  # one fragment instead of a frame of nuclei
    qc = report.frame_qc(labels)
    assert qc["qc_score"].idxmax() == 3
    assert qc.loc[3, "nuclei"] == 1 and qc.loc[3, "fragments"] == 1.0


def test_napari_tracks_layout_and_graph():
    tracks = pd.DataFrame(
        {
            "track_id": [2, 1, 1, 3, 4],
            "frame": [2, 1, 0, 2, 2],
            "y": [1.0, 2, 3, 4, 5],
            "x": [5.0, 4, 3, 2, 1],
            "parent_track_id": pd.array([1, pd.NA, pd.NA, 1, pd.NA], "Int64"),
        }
    )
    data, graph = report.napari_tracks(tracks)
    assert list(data.columns) == ["track_id", "t", "y", "x"]
    assert data[["track_id", "t"]].values.tolist() == [[1, 0], [1, 1], [2, 2], [3, 2], [4, 2]]
    assert graph == {2: [1], 3: [1]}


@pytest.mark.parametrize("n_frames, n_cells", [(1, 8), (4, 0)])
def test_figures_build_on_a_single_frame_or_no_cells(n_frames, n_cells):
    import anndata

    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=n_frames, shape=(64, 64), n_cells=n_cells, seed=2)
    tracks = data.tracks.assign(lineage_id=data.tracks["track_id"])
    figures = [
        report.segmentation_figure(data.image[:, 0], data.labels),
        report.worst_frames_figure(data.image[:, 0], data.labels),
        report.tracks_figure(tracks),
        report.lineage_figure(tracks),
    ]
    obs = tracks[["frame", "label", "cell_type"]].assign(sample="x").reset_index(drop=True)
    obs.index = obs.index.astype(str)
    adata = anndata.AnnData(np.ones((len(obs), 2)), obs=obs)
    adata.var_names = ["CD3", "CD20"]
    figures += [
        report.heatmap_figure(adata),
        report.composition_figure(adata.obs),
        report.timeseries_figure(adata),
        report.umap_figure(adata),
        report.spatial_figure(adata),
    ]
    for figure in figures:
        figure.canvas.draw()
    assert len(report.summary_table(adata.obs)) == (1 if n_cells else 0)


def _texts(figure):
    return [t.get_text() for ax in figure.axes for t in ax.texts]


def test_a_tissue_run_without_signatures_is_summarised_by_its_clusters():
    # `cytotrail init` writes no signatures: the summary figures group by Leiden cluster
    # (they used to say "no cells" over 310 cells), and single images are not "tracked"
    import anndata

    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {
            "sample": np.repeat(["s1", "s2", "s3"], 40),
            "frame": 0,
            "y": rng.uniform(0, 50, 120),
            "x": rng.uniform(0, 60, 120),
            "leiden": rng.choice(["0", "1", "2", "10"], 120),
        },
        index=[str(i) for i in range(120)],
    )
    adata = anndata.AnnData(rng.normal(size=(120, 3)), obs=obs)
    adata.var_names = ["CD3", "CD20", "PanCK"]
    adata.obsm["X_umap"] = rng.normal(size=(120, 2))
    assert report.group_key(adata.obs) == "leiden"
    heatmap = report.heatmap_figure(adata)
    assert _texts(heatmap) == [] and "Leiden cluster" in heatmap.axes[0].get_title()
    # numeric order of the clusters, not text order
    assert [t.get_text() for t in heatmap.axes[0].get_yticklabels()] == ["0", "1", "2", "10"]
    composition = report.composition_figure(adata.obs)
    assert _texts(composition) == ["one frame per sample: no time axis"]
    umap = report.umap_figure(adata)
    assert [ax.get_title() for ax in umap.axes] == ["by Leiden cluster", "by sample"]
    spatial = report.spatial_figure(adata)
    panels = [ax for ax in spatial.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["s1", "s2", "s3"]
    assert all(sum(len(c.get_offsets()) for c in ax.collections) == 40 for ax in panels)
    tracks = obs.assign(track_id=range(120), lineage_id=range(120), parent_track_id=np.nan)
    assert (
        _texts(report.tracks_figure(tracks[tracks["sample"] == "s1"]))[0]
        == "a single image: nothing to track"
    )
    assert _texts(report.lineage_figure(tracks[tracks["sample"] == "s1"])) == ["a single image: no lineages"]
    # with cell types, they win over the clusters
    adata.obs["cell_type"] = np.where(adata.obs["leiden"] == "0", "T", "B")
    assert report.group_key(adata.obs) == "cell_type"
    assert "cell type" in report.spatial_figure(adata).texts[0].get_text()
    adata.obs.loc[adata.obs["leiden"] == "1", "cell_type"] = "unknown"
    umap = report.umap_figure(adata)
    colours = {c.get_label().split(" ")[0]: tuple(c.get_facecolor()[0]) for c in umap.axes[0].collections}
    assert colours["unknown"] == (0.6, 0.6, 0.6, 1.0) and colours["B"] != colours["T"]


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
    return path


@pytest.mark.workflow
def test_html_report_opens_in_chromium_with_every_figure(demo_run):
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    html = demo_run / "results" / "report.html"
    assert html.is_file()
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        # every figure embedded in the report decodes to a real image
        widths = page.evaluate("""async () => {
            const out = {};
            for (const [path, item] of Object.entries(results)) {
                if (!item.mime_type.startsWith("image/")) continue;
                const img = new Image();
                img.src = item.data_uri;
                await img.decode().catch(() => null);
                out[path] = img.naturalWidth;
            }
            return out;
        }""")
        expected = {
            "segmentation.png",
            "worst_frames.png",
            "tracks.png",
            "lineages.png",
            "umap.png",
            "heatmap.png",
            "composition.png",
            "timeseries.png",
            "spatial.png",
        }
        assert {Path(p).name for p in widths} == expected
        assert all(w > 0 for w in widths.values()), widths
        # and a figure shows when a biologist clicks through to it
        for category, item in (("Segmentation", "s1"), ("Cell types", None)):
            page.goto(html.as_uri())
            page.get_by_text(category, exact=True).first.click()
            if item:
                page.get_by_text(item, exact=True).first.click()
            page.locator("a[iconname=eye]").first.click()
            page.wait_for_timeout(500)
            shown = page.evaluate(
                "() => Array.from(document.querySelectorAll('img'))"
                ".filter(i => i.src.startsWith('data:image/png'))"
                ".map(i => i.naturalWidth)"
            )
            assert shown and all(w > 0 for w in shown), category
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"report-{category.replace(' ', '-').lower()}.png"))
        browser.close()
    assert problems == []


@pytest.mark.workflow
def test_report_builds_for_a_sample_with_no_cells(tmp_path):
    prepare_demo(tmp_path, **{"demo": {"frames": 1, "size": 64, "cells": 0, "seed": 0}})
    (tmp_path / "config" / "samples.tsv").write_text("sample\timage\nempty\tresources/demo/empty.ome.tif\n")
    proc = snakemake(tmp_path, "results/empty/report/segmentation.png", check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "results" / "empty" / "report" / "tracks.png").stat().st_size > 0


def test_nucleus_sizes_are_counted_per_frame():
    """Labels restart each frame: the histogram counted label 1 of all frames as one nucleus."""
    labels = np.zeros((20, 40, 40), np.uint32)
    labels[:, 5:15, 5:15] = 1  # one 100 px nucleus per frame, the same id in every frame
    labels[:, 20:25, 20:25] = 2
    areas = report.nucleus_areas(labels)
    assert sorted(areas.tolist()) == [25] * 20 + [100] * 20
    assert report.nucleus_areas(labels[0]).tolist() == [100, 25]  # a single frame
    figure = report.segmentation_figure(labels.astype(np.float32), labels, n_frames=1)
    hist_ax = figure.axes[-1]
    edges = [patch.get_x() for patch in hist_ax.patches if patch.get_height() > 0]
    assert max(edges) < 101  # no bar near 20 x 100 px


def test_one_frame_daughter_is_visible_in_the_lineage_plot():
    tracks = pd.DataFrame(
        {
            "track_id": [1, 1, 1, 2, 3, 3],
            "frame": [0, 1, 2, 3, 3, 4],
            "lineage_id": [1] * 6,
            "parent_track_id": pd.array([pd.NA, pd.NA, pd.NA, 1, 1, 1], "Int64"),
        }
    )
    figure = report.lineage_figure(tracks)
    bars = [line for line in figure.axes[0].lines if line.get_linestyle() == "-"]
    widths = sorted(np.ptp(line.get_xdata()) for line in bars)
    assert len(bars) == 3 and widths[0] > 0.5  # track 2 lives one frame and still shows


def test_summary_keeps_a_sample_without_cells():
    """A sample with no cells was missing from summary.tsv."""
    obs = pd.DataFrame(
        {
            "sample": ["b", "b", "a"],
            "frame": [0, 1, 0],
            "track_id": [1, 1, 2],
            "parent_track_id": pd.array([pd.NA] * 3, "Int64"),
            "cell_type": ["T", "T", "B"],
        }
    )
    table = report.summary_table(obs, samples=["a", "empty", "b"])
    assert list(table["sample"]) == ["a", "empty", "b"]
    assert table.set_index("sample").loc["empty"].tolist() == [0] * (len(table.columns) - 1)
    assert table.set_index("sample").loc["b", "cells"] == 2
    assert list(report.summary_table(obs)["sample"]) == ["a", "b"]
    assert list(report.summary_table(obs.iloc[:0], samples=["x"])["sample"]) == ["x"]


def test_a_single_image_gets_close_ups_of_its_densest_typical_and_sparsest_fields():
    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=1, shape=(400, 600), n_cells=60, seed=5)
    labels = data.labels.copy()
    labels[0, :, 400:] = 0  # the right third empty: no window there is chosen
    windows = report.close_up_windows(labels[0])
    assert list(windows) == ["densest field", "typical field", "sparsest field"]
    size = report.close_up_size(labels[0])
    diameter = 2 * np.sqrt(np.median(report.nucleus_areas(labels)) / np.pi)
    assert size == int(np.clip(round(8 * diameter), 128, 512)) and size < 400  # about 8 nuclei across
    counts = [len(np.unique(labels[0, y : y + size, x : x + size])) - 1 for y, x in windows.values()]
    assert counts[0] >= counts[1] >= counts[2] > 0 and all(x < 400 for _, x in windows.values())
    figure = report.worst_frames_figure(data.image[:, 0], labels, title="s")
    assert [ax.get_title().split(" (")[0] for ax in figure.axes] == list(windows)
    assert figure.axes[0].images[0].get_array().shape[:2] == (size, size)  # full resolution
    small = report.close_up_windows(labels[0, :100, :100])
    assert small == {"the whole image": (0, 0)}


def test_whole_cells_are_outlined_under_the_nuclei(tmp_path):
    from cytotrail import io
    from cytotrail.cli import main
    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=2, shape=(96, 96), n_cells=8, seed=4)
    cells = data.cells  # the generator's true whole cells
    cyan = np.array(report.CELL_OUTLINE)
    for figure in (
        report.segmentation_figure(data.image[:, 0], data.labels, cells=cells),
        report.worst_frames_figure(data.image[:, 0], data.labels, cells=cells),
        report.worst_frames_figure(data.image[:1, 0], data.labels[:1], cells=cells[:1]),
    ):
        shown = figure.axes[0].images[0].get_array()
        assert np.isclose(shown, cyan).all(axis=2).sum() > 20  # cell outlines drawn
    plain = report.segmentation_figure(data.image[:, 0], data.labels).axes[0].images[0].get_array()
    assert not np.isclose(plain, cyan).all(axis=2).any()
    # the CLI names both files when the stacks disagree
    image = tmp_path / "image.tif"
    io.write_image(image, data.image, channel_names=data.channel_names)
    io.write_labels(tmp_path / "labels.tif", data.labels)
    io.write_labels(tmp_path / "cells.tif", cells[:1])
    io.write_table(tmp_path / "tracks.csv", data.tracks)
    args = ["report", "sample", str(image), str(tmp_path / "labels.tif"), str(tmp_path / "tracks.csv")]
    assert main([*args, "-o", str(tmp_path / "out"), "--cells", str(tmp_path / "cells.tif")]) == 2
    assert not (tmp_path / "out" / "segmentation.png").exists()
