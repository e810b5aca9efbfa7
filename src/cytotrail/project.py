"""A user's own project: the config and sample sheet of ``cytotrail init`` for their images.

Arrays (here: image metadata) in, text out; :mod:`cytotrail.cli` reads the images' headers
with :mod:`cytotrail.io` and writes what these functions return.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cytotrail.io import InputError

__all__ = ["NUCLEAR_HINTS", "config_text", "guess_nuclear_channel", "sample_names", "sample_sheet"]

# Channel names that say "nuclear stain", matched at the start of the lower-cased name
# without punctuation: DNA1, DAPI, Hoechst 33342, H2B-GFP, H3, SiR-DNA, DRAQ5, NucBlue, ...
NUCLEAR_HINTS = (
    "dna",
    "dapi",
    "hoechst",
    "h2b",
    "h3",
    "histone",
    "sirdna",
    "draq",
    "nucblue",
    "nucspot",
    "nucred",
    "nuclei",
    "nuclear",
    "sytox",
    "topro",
    "ir191",
    "ir193",
)


def guess_nuclear_channel(names, *, given=None, source="image"):
    """The nuclear channel among ``names``: ``given``, the first that looks nuclear, or the only one.

    Parameters
    ----------
    names : list of str
        Channel names of one image.
    given : str, optional
        The user's choice (``--nuclear-channel``); must be one of ``names``.
    source : str
        What to name in the error message (the image).

    Returns
    -------
    str

    Raises
    ------
    InputError
        ``given`` is not a channel, or no name looks nuclear among several channels.
    """
    if given is not None:
        if given not in names:
            raise InputError(f"{source}: no channel {given!r} (--nuclear-channel); channels are {names}")
        return given
    for name in names:
        key = re.sub(r"[^a-z0-9]", "", name.lower())
        if any(key.startswith(hint) for hint in NUCLEAR_HINTS) or key == "pi":  # propidium iodide
            return name
    if len(names) == 1:
        return names[0]
    raise InputError(
        f"{source}: cannot tell the nuclear channel among {names}; give it with --nuclear-channel NAME"
    )


def sample_names(paths):
    """One sample name per image, from its file name: letters, digits, '_', '.', '-', unique."""
    names = []
    for path in paths:
        name = Path(path).name
        for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-") or "sample"
        if not name[0].isalnum():
            name = f"s{name}"
        base, n = name, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def sample_sheet(images, metadata, *, nuclear, axes=None, channel_names=None):
    """The sample sheet of ``images`` as (header, rows) of strings.

    Parameters
    ----------
    images : list of str
        Image paths as they go into the sheet.
    metadata : list of dict
        :func:`cytotrail.io.image_metadata` of each image.
    nuclear : list of str
        Each image's nuclear channel.
    axes : str, optional
        The ``axes`` column (given for every image).
    channel_names : list of str, optional
        The ``channel_names`` column (given for every image).

    Returns
    -------
    header : list of str
    rows : list of list of str
    """
    header = ["sample", "image"]
    if axes:
        header.append("axes")
    if channel_names:
        header.append("channel_names")
    if len(set(nuclear)) > 1:
        header.append("nuclear_channel")
    rows = []
    for name, image, _meta, nuc in zip(sample_names(images), images, metadata, nuclear):
        row = {
            "sample": name,
            "image": str(image),
            "axes": axes or "",
            "channel_names": ",".join(channel_names or []),
            "nuclear_channel": nuc,
        }
        bad = [v for v in row.values() if "\t" in v or "\n" in v]
        if bad:
            raise InputError(f"image {image}: a tab or newline in {bad[0]!r} cannot go into a TSV sheet")
        rows.append([row[column] for column in header])
    return header, rows


def config_text(metadata, nuclear, *, images):
    """The config.yaml of a new project, commented, without the demo's signatures.

    Parameters
    ----------
    metadata : list of dict
        :func:`cytotrail.io.image_metadata` of each image.
    nuclear : list of str
        Each image's nuclear channel; the first is the config's ``nuclear_channel``.
    images : list of str
        The image paths (named in messages).

    Returns
    -------
    str
        YAML text.

    Raises
    ------
    InputError
        The images record different pixel sizes (one config holds one).
    """
    sizes = {m["pixel_size_um"] for m in metadata}
    if len(sizes) > 1:
        listed = ", ".join(f"{i}: {m['pixel_size_um']}" for i, m in zip(images, metadata))
        raise InputError(
            f"the images record different pixel sizes ({listed}); one config holds one "
            "pixel size: run `cytotrail init` once per group of images"
        )
    pixel_size = sizes.pop()
    # markers: every channel but the nuclear one that every image has, in the first one's order
    common = [
        n
        for n in metadata[0]["channel_names"]
        if all(n in m["channel_names"] for m in metadata) and n not in nuclear
    ]

    def dump(value):  # JSON is YAML: strings quoted and escaped, lists in brackets
        return json.dumps(value, ensure_ascii=False)

    lines = [
        f"# Written by `cytotrail init` for {len(metadata)} image(s). Every key, with its default:",
        "# workflow/schemas/config.schema.yaml. Paths are relative to this project folder.",
        "samples: config/samples.tsv",
        "results: results",
        "",
        "# pixel size in µm: "
        + ("read from the images" if pixel_size else "NOT recorded in the images: set it (1.0 = pixels)"),
        f"pixel_size_um: {dump(pixel_size or 1.0)}",
        "",
        "# the channel that is segmented and tracked (per image: the sample sheet's nuclear_channel)",
        f"nuclear_channel: {dump(nuclear[0])}",
        "",
        "segment:",
        "  backend: unet",
        "  model: null",
        "  # typical nucleus diameter in pixels; null estimates it per movie. Set it when the",
        "  # estimate (logged in results/logs/segment_nuclei/) is off or nuclei are merged or split.",
        "  diameter_px: null",
        "",
        "track:",
        "  # largest displacement of a nucleus between frames, in pixels; null adapts it to the data.",
        "  # Set it for fast-moving cells or long frame intervals.",
        "  search_range_px: null",
        "  memory: 2",
        "  divisions: true",
        "",
        "quantify:",
        "  # channels measured (null: all)",
        "  markers: null",
        "  statistics: [mean]",
        "  compartments: [nucleus, cytoplasm, cell]",
        "  cytoplasm_um: 3.0",
        "  # background subtracted before measuring: null (none, as MCQuant and steinbock measure),",
        "  # auto (the frame's median outside all cells) or local (block medians around each cell:",
        "  # for uneven illumination; in dense tissue it subtracts the cells' own signal)",
        "  background: null",
        "",
        "cluster:",
        "  # markers whose intensities are clustered"
        + ("" if common else " (none: a nuclear-only movie is not clustered)"),
        f"  markers: {dump(common)}",
        "  feature: cell_mean",
        "  # cell-type signatures, e.g. T_cell: {positive: [CD3], negative: [CD20]};",
        "  # a child type names its parent: CD8_T: {positive: [CD8], parent: T_cell}",
        "  cell_types: {}",
        "",
    ]
    return "\n".join(lines)
