"""Tests of cytotrail.quantify.kernels: compiled lazily, cached on disk, also from a read-only installation."""

from pathlib import Path

import pytest

_CACHE_PROBE = """
import json, sys
import numpy as np
import cytotrail.quantify as q
assert q.__file__.startswith(sys.argv[1]), q.__file__
lab = np.zeros((40, 40), np.uint32)
lab[5:15, 5:15] = 1
lab[20:30, 18:33] = 7
img = np.arange(2 * 40 * 40, dtype=np.uint16).reshape(2, 40, 40)
out = q.quantify(lab, img, channel_names=["a", "b"], compartments=("nucleus",),
                 morphology=False)
assert out["a_nucleus_mean"].iloc[0] == img[0][lab == 1].mean()
from cytotrail.quantify import kernels, shape_kernels
dispatchers = [f for m in (kernels, shape_kernels) for f in vars(m).values() if hasattr(f, "stats")]
assert len(dispatchers) == 13, len(dispatchers)
hits = sum(sum(k.stats.cache_hits.values()) for k in dispatchers)
misses = sum(sum(k.stats.cache_misses.values()) for k in dispatchers)
print(json.dumps({"hits": hits, "misses": misses}))
"""


@pytest.mark.slow
def test_numba_kernels_cached_when_package_is_read_only(tmp_path):
    # every Snakemake job is a fresh process: the kernels compile once, later processes
    # load them from numba's cache, also from an installation they cannot write to (numba
    # then caches under the user's cache directory)
    import json
    import os
    import shutil
    import subprocess
    import sys

    pytest.importorskip("numba")
    src = Path(__file__).resolve().parents[2] / "src" / "cytotrail"
    pkg = tmp_path / "site"
    shutil.copytree(src, pkg / "cytotrail", ignore=shutil.ignore_patterns("__pycache__"))
    cache_home = tmp_path / "cache"
    cache_home.mkdir()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root writes through any permission: a file where numba would create the
        # package's __pycache__ makes that location unusable in the same way
        (pkg / "cytotrail" / "quantify" / "__pycache__").write_text("")
    for path in [pkg, *pkg.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "PYTHON"))}
    env.update(PYTHONPATH=str(pkg), XDG_CACHE_HOME=str(cache_home), HOME=str(tmp_path))

    def probe():
        res = subprocess.run(
            [sys.executable, "-c", _CACHE_PROBE, str(pkg)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout.strip().splitlines()[-1])

    first, second = probe(), probe()
    try:
        assert first["misses"] > 0 and first["hits"] == 0  # compiled on the first call
        assert second["hits"] == first["misses"] and second["misses"] == 0  # loaded
        assert not list(pkg.rglob("*.nbi"))  # nothing written beside the read-only module
        assert list((cache_home / "numba").rglob("*.nbi"))
    finally:
        for path in [pkg, *pkg.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_import_does_not_load_numba():
    # `import cytotrail.quantify` stays cheap: numba (and the kernels) load with the first frame
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, cytotrail.quantify as q; "
        "assert 'numba' not in sys.modules and 'cytotrail.quantify.kernels' not in sys.modules; "
        "q.quantify(np.ones((4, 4), np.uint8), np.ones((1, 4, 4)), channel_names=['a']); "
        "assert 'numba' in sys.modules"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
