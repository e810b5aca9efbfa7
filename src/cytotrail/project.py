"""A user's own project: the config and sample sheet of ``cytotrail init`` for their images.

Arrays (here: image metadata) in, text out; :mod:`cytotrail.cli` reads the images' headers
with :mod:`cytotrail.io` and writes what these functions return.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cytotrail.io import PLANE_SUFFIXES, InputError

__all__ = [
    "NUCLEAR_HINTS",
    "channel_roles",
    "config_text",
    "guess_membrane_channels",
    "guess_nuclear_channel",
    "nuclear_rank",
    "sample_names",
    "sample_sheet",
]

# Channel names that say "nuclear stain", matched at the start of the lower-cased name without
# punctuation, in order of preference: DNA dyes (DNA1, dsDNA, DAPI, Hoechst 33342, SiR-DNA,
# DRAQ5, Ir191, ...), then pan-histone channels (HH3, Histone H3, H2B-GFP), then histone
# modifications (H3K27me3, H3K9ac), which are nuclear but also markers in their own right.
DNA_STAINS = (
    "dna",
    "dsdna",
    "ssdna",
    "dapi",
    "hoechst",
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
HISTONES = ("h2b", "hh3", "h3", "histone")
NUCLEAR_HINTS = DNA_STAINS + HISTONES
# Channels that record no antibody: background (MIBI's "Background", empty masses) and the
# elements MIBI records from the slide and the tissue (Au, Si, Ta, Na, C, P, Fe, Ca).
BACKGROUND_HINTS = ("background", "bkg", "empty", "blank")
ELEMENTS = frozenset({"au", "si", "ta", "na", "c", "p", "fe", "ca", "al", "ti", "cu", "zn", "mg", "k", "s"})


# Channels that outline most cells of a tissue, matched at the start of the lower-cased
# name without punctuation: membrane (E-cadherin, Na/K-ATPase, CD45, CD44, CD98, CD298,
# beta-catenin, MHC class I / HLA-ABC, WGA) and cytoplasm (keratins, vimentin). The
# whole-cell masks of Mesmer and steinbock are drawn on such a sum.
MEMBRANE_HINTS = (
    "ecad",
    "cdh1",
    "nakatpase",
    "atp1a1",
    "cd45",
    "ptprc",
    "cd44",
    "cd98",
    "cd298",
    "betacatenin",
    "bcatenin",
    "catenin",
    "hlaabc",
    "hlaclass1",
    "hlaclassi",
    "mhci",
    "wga",
    "panck",
    "pancytokeratin",
    "pankeratin",
    "pankrt",
    "cytokeratin",
    "keratin",
    "krt",
    "vimentin",
)
_KERATIN_SHORT = re.compile(r"^ck\d")  # CK5, CK8/18, CK19


def guess_membrane_channels(markers):
    """The markers that outline most cells (``MEMBRANE_HINTS``; CK5, CK19, ...), in order:
    the channels :func:`config_text` grows whole cells over. Empty when none is named so."""
    keys = {m: _key(m) for m in markers}
    return [
        m
        for m, key in keys.items()
        if (key.startswith(MEMBRANE_HINTS) and not key.startswith(("mhcii", "hlaclassii")))
        or _KERATIN_SHORT.match(key)
    ]


def _key(name):
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def nuclear_rank(name):
    """0 for a DNA dye, 1 for a pan-histone channel, 2 for a histone modification, else None."""
    key = _key(name)
    if key == "pi" or key.startswith(DNA_STAINS):  # "pi": propidium iodide
        return 0
    if key.startswith(HISTONES):
        # a modified residue (H3K27me3, H3K9ac, H3S10p, Histone H3 pS10) is a marker too
        return 2 if re.search(r"h[1-4][a-z]?[kstry][0-9]|p[sty][0-9]|phospho", key) else 1
    return None


def guess_nuclear_channel(names, *, given=None, source="image"):
    """The nuclear channel among ``names``: ``given``, the best nuclear-looking one, or the only one.

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
        The first channel of the best :func:`nuclear_rank` (a DNA dye before a histone).

    Raises
    ------
    InputError
        ``given`` is not a channel, or no name looks nuclear among several channels.
    """
    if given is not None:
        if given not in names:
            raise InputError(f"{source}: no channel {given!r} (--nuclear-channel); channels are {names}")
        return given
    ranked = [(rank, i) for i, name in enumerate(names) if (rank := nuclear_rank(name)) is not None]
    if ranked:
        return names[min(ranked)[1]]
    if len(names) == 1:
        return names[0]
    raise InputError(
        f"{source}: cannot tell the nuclear channel among {names}; give it with --nuclear-channel NAME"
    )


def channel_roles(names, nuclear):
    """Split channel names into markers, background channels and channels left out.

    Parameters
    ----------
    names : list of str
        The channels every image has.
    nuclear : sequence of str
        The nuclear channel(s) (never markers).

    Returns
    -------
    markers : list of str
        The channels to cluster: all but the ones below.
    background : list of str
        Background channels (names starting like ``BACKGROUND_HINTS``): for
        ``cluster.background``, which flags the cells where they are high.
    left_out : dict
        ``{name: why}`` of the other channels that are no marker: further DNA dyes or
        pan-histone channels (DNA2 beside DNA1, HH3 beside dsDNA) and elements of the
        slide (``ELEMENTS``, named alone: MIBI's Au, Si, Ta, ...).
    """
    markers, background, left_out = [], [], {}
    for name in names:
        key = _key(name)
        if name in nuclear:
            continue
        if key.startswith(BACKGROUND_HINTS):
            background.append(name)
        elif nuclear_rank(name) in (0, 1):
            left_out[name] = "a nuclear stain"
        elif key in ELEMENTS:
            left_out[name] = "an element, no antibody"
        else:
            markers.append(name)
    return markers, background, left_out


def sample_names(paths):
    """One sample name per image, from its file name: letters, digits, '_', '.', '-', unique."""
    names = []
    for path in paths:
        name = Path(path).name
        for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", *PLANE_SUFFIXES):
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
    # the channels every image has, in the first one's order
    common = [n for n in metadata[0]["channel_names"] if all(n in m["channel_names"] for m in metadata)]
    markers, background, left_out = channel_roles(common, nuclear)

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
        *_cells_lines(guess_membrane_channels(markers), dump),
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
        + ("" if markers else " (none: a nuclear-only movie is not clustered)"),
        *([f"  # left out: {', '.join(f'{n} ({why})' for n, why in left_out.items())}"] if left_out else []),
        f"  markers: {dump(markers)}",
        "  # background channels: cells where one is high are flagged and typed unknown, not positive",
        f"  background: {dump(background)}",
        "  feature: cell_mean",
        "  # cell-type signatures, e.g. T_cell: {positive: [CD3], negative: [CD20]};",
        "  # a child type names its parent: CD8_T: {positive: [CD8], parent: T_cell}",
        "  cell_types: {}",
        "",
    ]
    return "\n".join(lines)


def _cells_lines(membrane, dump):
    """The ``segment.cells`` lines of the config: whole cells over ``membrane``, or null."""
    if not membrane:
        return [
            "  # whole cells: name membrane/cytoplasm channels, e.g. {channels: [ECadherin, CD45]};",
            "  # null measures each nucleus and a ring of quantify.cytoplasm_um around it",
            "  cells: null",
        ]
    return [
        "  # whole cells grown from the nuclei over these membrane/cytoplasm channels (found by",
        "  # name); null measures each nucleus and a ring of quantify.cytoplasm_um around it",
        "  cells:",
        f"    channels: {dump(membrane)}",
    ]
