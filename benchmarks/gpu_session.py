"""One GPU session for issues 13 and 14: the GPU checks, then a leave-family-out training and its scores.

Written for a lent machine with one CUDA GPU, where a session has minutes, not hours: every
step runs from this one call, logs to ``OUT/<step>.log`` and the summary table is printed last.
Segmentation needs only torch, numpy, scipy, scikit-image, tifffile, numba and pandas (and
pytest for the checks), so the package runs from ``src`` without installing it::

    # here: the data travel inside the checkout, in a folder git ignores
    mkdir -p .device && cp -r ../shared/data/nuclei/dsb2018_fluo .device/ && echo .device >> .git/info/exclude
    # there (carry .device):
    PYTHONPATH=src python3 benchmarks/gpu_session.py --data .device/dsb2018_fluo --out "$OUT" --minutes 6

Steps:

1. ``gpu``: ``nvidia-smi`` and what torch sees;
2. ``gpu-tests`` (issue 14): ``pytest -m gpu`` on the device post-processing and the
   segmentation tests;
3. ``throughput`` (issue 14): ``bench_segment_throughput.py --compare-cpu-postprocess``;
4. ``train`` (issue 13): ``cytotrail train`` from scratch with the held-out dsb2018 families
   left out (``--hold-out-families 0.15``), synthetic frames beside them, on CUDA with bf16,
   ``--workers`` crop processes and ``--batch-size`` crops per step, ``--steps`` steps or
   ``--minutes`` of training, whichever ends first; ``nvidia-smi`` samples the GPU's
   utilisation every 5 s meanwhile (``OUT/gpu-utilisation.csv``);
5. ``scores`` (issue 13): ``bench_segment_ood.py --true-diameter`` on the new model (its
   training excluded the held-out families, so its held-out score is leave-family-out) and on
   the shipped one.

The model folder is ``OUT/nuclei_unet``: copy it into ``src/cytotrail/models/`` only if its
in-distribution val score beats the shipped model's (val decides; held-out only reports).

``--dry-run`` runs every step on the CPU with a budget of seconds (a check of this script
where there is no GPU; the GPU steps then report that they were skipped).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DSB = ROOT.parent / "shared" / "data" / "nuclei" / "dsb2018_fluo"


def run(name, command, out, *, timeout=None, env=None):
    """Run ``command`` (a list), its output to OUT/<name>.log; (return code, seconds, log text)."""
    started = time.perf_counter()
    log = out / f"{name}.log"
    with log.open("w") as handle:
        handle.write("$ " + " ".join(map(str, command)) + "\n")
        handle.flush()
        try:
            rc = subprocess.run(
                [str(c) for c in command],
                cwd=ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env=env,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            rc = 124
        except FileNotFoundError as err:
            handle.write(f"{err}\n")
            rc = 127
    return rc, time.perf_counter() - started, log.read_text()


def last(pattern, text, default="-"):
    """The last match of ``pattern``'s first group in ``text``."""
    found = re.findall(pattern, text)
    return found[-1] if found else default


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DSB, help="the dsb2018_fluo folder")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-session")))
    parser.add_argument("--minutes", type=float, default=6.0, help="training minutes (default 6)")
    parser.add_argument(
        "--steps",
        type=int,
        default=20000,
        help="training steps (default 20000: about 6 minutes at the 55 steps/s of 32 crops measured on an "
        "H200; the learning rate decays over them, so choose steps that fit --minutes)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="crops per step (default 32)")
    parser.add_argument("--workers", type=int, default=12, help="crop processes (default 12)")
    parser.add_argument("--base", type=int, default=16, help="U-Net width (default 16, the shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU, seconds of budget")
    args = parser.parse_args(argv)
    if not (args.data / "manifest.csv").is_file():
        raise SystemExit(f"{args.data}: no manifest.csv (pass --data, the dsb2018_fluo folder)")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    )
    python = sys.executable
    have_smi = shutil.which("nvidia-smi") is not None
    rows = []

    rc, secs, text = run(
        "gpu",
        [
            python,
            "-c",
            "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), "
            "torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')",
        ],
        out,
        env=env,
    )
    cuda = "cuda True" in text
    if have_smi:
        run("nvidia-smi", ["nvidia-smi"], out)
    rows.append(("gpu", rc, secs, text.strip().splitlines()[-1] if text.strip() else "-"))
    if not cuda and not args.dry_run:
        print(f"no CUDA GPU here ({text.strip()}); use --dry-run to check the script on the CPU")
        return 2

    rc, secs, text = run(
        "gpu-tests",
        [
            python,
            "-m",
            "pytest",
            "-q",
            "-m",
            "gpu",
            "-p",
            "no:cacheprovider",
            "tests/segment/test_postprocess_torch.py",
            "tests/segment/test_segment.py",
        ],
        out,
        env=env,
        timeout=300,
    )
    rows.append(("gpu-tests", rc, secs, last(r"(\d+ passed[^\n=]*|\d+ skipped[^\n=]*)", text)))

    throughput = [python, "benchmarks/bench_segment_throughput.py", "--compare-cpu-postprocess"]
    if args.dry_run:
        throughput += ["--side", "256", "--frames", "2", "--repeats", "1"]
    rc, secs, text = run("throughput", throughput, out, env=env, timeout=300)
    rows.append(("throughput", rc, secs, last(r"(end to end / network alone: [0-9.]+)", text)))

    model = out / "nuclei_unet"
    d = args.data
    train = [
        python,
        "-m",
        "cytotrail.cli",
        "train",
        "-o",
        model,
        "--images",
        d / "images",
        "--labels",
        d / "masks",
        "--manifest",
        d / "manifest.csv",
        "--hold-out-families",
        "0.15",
        "--synthetic",
        "100",
        "--synthetic-val",
        "10",
        "--seed",
        args.seed,
        "--base",
        args.base,
        "--checkpoint-every",
        "1000",
    ]
    if args.dry_run:
        train += [
            "--steps",
            "4",
            "--batch-size",
            "2",
            "--workers",
            "1",
            "--synthetic",
            "2",
            "--synthetic-val",
            "1",
            "--device",
            "cpu",
            "--log-every",
            "1",
        ]
    else:
        train += [
            "--steps",
            args.steps,
            "--batch-size",
            args.batch_size,
            "--workers",
            args.workers,
            "--device",
            "cuda",
            "--max-minutes",
            args.minutes,
            "--log-every",
            "200",
        ]
    with (out / "gpu-utilisation.csv").open("w") as samples:
        sampler = None
        if have_smi and cuda:
            sampler = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=timestamp,utilization.gpu,memory.used",
                    "--format=csv",
                    "-l",
                    "5",
                ],
                stdout=samples,
                stderr=subprocess.DEVNULL,
            )
        try:
            rc, secs, text = run(
                "train", train, out, env=env, timeout=None if args.dry_run else 60 * (args.minutes + 6)
            )
        finally:
            if sampler is not None:
                sampler.terminate()
                sampler.wait()
    utilisation = "-"
    if (out / "gpu-utilisation.csv").is_file():
        values = [int(v) for v in re.findall(r", (\d+) %", (out / "gpu-utilisation.csv").read_text())]
        busy = [v for v in values if v > 0]
        if busy:
            utilisation = (
                f"GPU busy {sorted(busy)[len(busy) // 2]} % (median of {len(busy)} samples while training)"
            )
    rows.append(("train", rc, secs, f"{last(r'([0-9.]+ crops/s)', text)}; {utilisation}"))

    scores = [python, "benchmarks/bench_segment_ood.py", "--true-diameter", "--data", d, "--threads", "8"]
    if args.dry_run:
        scores += ["--limit", "2"]
    for name, extra in (("scores-new", ["--model", model]), ("scores-shipped", [])):
        if name == "scores-new" and not (model / "weights.pt").is_file():
            rows.append((name, 1, 0.0, "no model was written"))
            continue
        rc, secs, text = run(name, scores + extra, out, env=env, timeout=900)
        aps = re.findall(r"^\s+unet\s+([0-9.]+)", text, flags=re.M)
        rows.append(
            (name, rc, secs, f"AP@0.5 in-distribution val / held-out families: {' / '.join(aps) or '-'}")
        )

    print(f"\n{'step':<16} {'rc':>3} {'seconds':>8}  result (logs in {out})")
    for name, rc, secs, result in rows:
        print(f"{name:<16} {rc:>3} {secs:8.1f}  {result}")
    return 0 if all(rc == 0 for _, rc, _, _ in rows[1:]) or args.dry_run else 1


if __name__ == "__main__":
    sys.exit(main())
