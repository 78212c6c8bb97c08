"""What a generator change costs the build: old and new generator side by side, interleaved.

Each repeat, for each side (the generator at a baseline git ref, checked out into a temporary
worktree, and this checkout): `cellstore synth` a few demo-like plates into a fresh folder,
then `cellstore build --select +cell_features` of them into a fresh warehouse (the image
stages: images, illumination, nuclei, cell_features). Both sides build with this
checkout's pipeline, so only the pixels differ. Prints medians, the new ÷ old ratio, the
nuclei found and each side's peak memory, and a CSV row per run.

    python benchmarks/bench_generator.py --baseline 029e68c --repeats 3

The SimCLR stages downstream cost the same per crop whatever drew the pixels; the image stages
are where a generator change can add time (more cells, harder segmentation).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PLATES = "Week1_22123,Week2_24121,Week4_27481"


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS of the process tree's largest member in MiB, stdout)."""
    wrapped = ["/usr/bin/time", "-f", "PEAK_KB %M", *cmd]
    started = time.perf_counter()
    done = subprocess.run(wrapped, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK_KB")]
    return seconds, int(peak[-1].split()[1]) / 1024 if peak else float("nan"), done.stdout


def run_side(code: Path, plates: str, workdir: Path) -> dict[str, float]:
    source, warehouse = workdir / "source", workdir / "warehouse"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    synth = [sys.executable, "-m", "cellstore", "synth", "--out", str(source)]
    synth += ["--plates", plates, "--sites", "1", "--scale", "0.5", "--wells", "annotated"]
    generate_s, generate_mib, _ = timed(synth, cwd=code)
    build = [sys.executable, "-m", "cellstore", "build", "--select", "+cell_features"]
    build += ["--source", str(source), "--warehouse", str(warehouse), "--scheduler", "inline"]
    build_s, build_mib, _ = timed(build, cwd=REPO)
    nuclei = subprocess.run(
        [sys.executable, "-m", "cellstore", "sql", "select count(*) as n from nuclei"]
        + ["--warehouse", str(warehouse), "-f", "csv"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    return {
        "generate_s": generate_s,
        "build_s": build_s,
        "total_s": generate_s + build_s,
        "peak_mib": max(generate_mib, build_mib),
        "nuclei": int(nuclei),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git ref of the old generator")
    parser.add_argument("--plates", default=DEFAULT_PLATES, help="comma-separated plates")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="cellstore-bench-generator-"))
    baseline = scratch / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(baseline), args.baseline],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    sides = {f"old ({args.baseline})": baseline, "new (this checkout)": REPO}
    runs: list[tuple[str, int, dict[str, float]]] = []
    try:
        for repeat in range(args.repeats):
            order = list(sides.items())
            if repeat % 2:
                order.reverse()  # alternate who goes first: drift hits both sides alike
            for name, code in order:
                result = run_side(code, args.plates, scratch / "run")
                runs.append((name, repeat, result))
                print(
                    f"repeat {repeat} {name:24s} generate {result['generate_s']:6.1f} s  "
                    f"build {result['build_s']:6.1f} s  {result['nuclei']} nuclei",
                    flush=True,
                )
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=REPO)
        shutil.rmtree(scratch, ignore_errors=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for n, _, r in runs if n == name)

    old, new = sides
    print(f"\n{args.plates} (1 site, scale 0.5, annotated wells), medians of {args.repeats}")
    print(f"{'':24s} {'generate s':>11s} {'build s':>9s} {'total s':>9s} {'peak MiB':>9s} nuclei")
    for name in sides:
        print(
            f"{name:24s} {median(name, 'generate_s'):11.1f} {median(name, 'build_s'):9.1f} "
            f"{median(name, 'total_s'):9.1f} {median(name, 'peak_mib'):9.0f} "
            f"{median(name, 'nuclei'):.0f}"
        )
    for key in ("generate_s", "build_s", "total_s"):
        print(f"new ÷ old {key[:-2]:9s} {median(new, key) / median(old, key):.3f}")
    if args.csv:
        with args.csv.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["side", "repeat", *runs[0][2]])
            for name, repeat, result in runs:
                writer.writerow([name, repeat, *result.values()])


if __name__ == "__main__":
    main()
