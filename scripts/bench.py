#!/usr/bin/env python3
"""`make bench`: time mc_pipeline against ccusage on a synthetic OpenClaw home, side by side.

Steps (each a fresh ``python -m mc_pipeline run --quiet`` process, timed from outside):
  1. full   - a fresh data dir, everything read;
  2. +1%    - about 1% new sessions added to the home, then a rerun;
  3. no-op  - a rerun with nothing new.
After each step, when ccusage is found (``$CCUSAGE`` or ``ccusage`` on PATH), it is timed on the same
home: ``ccusage openclaw daily --json --offline -z UTC --open-claw-path HOME``. Peak memory is the
child's own maximum resident set (``os.wait4`` rusage), wall time from ``time.perf_counter``.

    python scripts/bench.py                     # 1 GB home under /tmp (MC_BENCH_MB or --size-mb to change)
    python scripts/bench.py --size-mb 200 --keep

Public tools only (the standard library, the project itself, ccusage when installed). The home is
synthetic (scripts/synth_home.py), generated under the system temp dir, never under data/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import synth_home  # noqa: E402

#: Targets of issue 6, as (step, time ratio to ccusage at most, memory ratio at most).
TARGETS = {"full": (1.0, 0.5), "+1%": (0.25, None), "no-op": (0.15, None)}


@dataclass
class Timed:
    wall_s: float
    cpu_s: float
    peak_mib: float
    returncode: int
    stdout: str
    stderr: str


def timed(cmd: list[str], env: dict[str, str] | None = None) -> Timed:
    """Run ``cmd``; wall time, user+sys CPU and peak RSS of that child alone (os.wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Timed(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_mib=usage.ru_maxrss / 1024,  # KiB on Linux
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def home_bytes(home: Path) -> int:
    total = 0
    for f in (home / "agents").glob("*/sessions/*"):
        if synth_home_counts(f.name):
            total += f.stat().st_size
    return total


def synth_home_counts(name: str) -> bool:
    """Files both tools read: transcripts and their reset/deleted archives, never .bak copies."""
    return ".jsonl" in name and ".bak." not in name and not name.endswith(".lock")


def warm(home: Path) -> None:
    """Read every file once so both tools start from the same (warm) page cache."""
    for f in (home / "agents").glob("*/sessions/*"):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def find_ccusage() -> str | None:
    exe = os.environ.get("CCUSAGE") or shutil.which("ccusage")
    return exe if exe and Path(exe).exists() else None


def run_pipeline(home: Path, data: Path) -> Timed:
    env = {
        **os.environ,
        "OPENCLAW_HOME": str(home),
        "MC_DATA_DIR": str(data),
        "DAGSTER_HOME": str(data / "dagster_home"),
        "MC_TIMEZONE": "UTC",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.pop("MC_FULL_REBUILD", None)
    t = timed([sys.executable, "-m", "mc_pipeline", "run", "--quiet"], env)
    if t.returncode != 0:
        print(f"  mc_pipeline run exited {t.returncode}:\n{t.stderr[-2000:]}", file=sys.stderr)
    return t


def run_ccusage(exe: str, home: Path) -> tuple[Timed, dict | None]:
    t = timed([exe, "openclaw", "daily", "--json", "--offline", "-z", "UTC", "--open-claw-path", str(home)])
    try:
        return t, json.loads(t.stdout)
    except ValueError:
        print(f"  ccusage exited {t.returncode}: {t.stderr[-500:]}", file=sys.stderr)
        return t, None


def our_totals(data: Path) -> dict:
    import polars as pl

    files = sorted((data / "parquet" / "llm_calls").glob("day=*/*.parquet"))
    if not files:
        return {}
    calls = pl.scan_parquet(files).filter(pl.col("source") == "transcript")
    row = calls.select(
        calls=pl.len(), recorded_cost=pl.col("cost_recorded_usd").sum(), tokens=pl.col("total_tokens").sum()
    ).collect()
    return row.row(0, named=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=float, default=float(os.environ.get("MC_BENCH_MB", 1024)))
    p.add_argument("--add-pct", type=float, default=1.0, help="new sessions added before the second run, in %%")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mc-bench")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--keep", action="store_true", help="keep the home and data dir afterwards")
    args = p.parse_args(argv)

    work = args.workdir.resolve()
    if any(part == "data" for part in work.parts):
        print("refusing to put the synthetic home under a data/ folder", file=sys.stderr)
        return 2
    home, data = work / f"home-{args.size_mb:g}mb-seed{args.seed}", work / "data"
    if home.exists():
        shutil.rmtree(home)  # a home from an earlier bench has the 1% additions in it: start clean
    shutil.rmtree(data, ignore_errors=True)
    t0 = time.perf_counter()
    stats = synth_home.generate(home, args.size_mb, seed=args.seed)
    print(f"synthetic home: {home} ({stats['bytes'] / 1e6:,.0f} MB, {stats['files']} files; "
          f"generated in {time.perf_counter() - t0:.1f} s)")  # fmt: skip
    ccusage = find_ccusage()
    print(f"ccusage: {ccusage or 'not found (set CCUSAGE or put ccusage on PATH; npm i ccusage@20.0.24)'}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")

    rows = []

    def step(name: str) -> None:
        size = home_bytes(home)
        warm(home)
        ours = run_pipeline(home, data)
        cc, cc_json = run_ccusage(ccusage, home) if ccusage else (None, None)
        rows.append((name, size, ours, cc, our_totals(data), (cc_json or {}).get("totals")))

    step("full")
    added = synth_home.add_sessions(home, args.size_mb * args.add_pct / 100, seed=args.seed + 1)
    print(f"added {added['bytes'] / 1e6:,.1f} MB in {added['files']} new sessions")
    step("+1%")
    step("no-op")

    print()
    print("| run | home MB | mc_pipeline wall s | CPU s | MB/s | peak RSS MiB | ccusage wall s | ccusage peak MiB "
          "| time ratio | memory ratio | target |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    ok = True
    for name, size, ours, cc, _, _ in rows:
        mbps = size / 1e6 / ours.wall_s
        cells = [name, f"{size / 1e6:,.0f}", f"{ours.wall_s:.2f}", f"{ours.cpu_s:.2f}", f"{mbps:,.0f}",
                 f"{ours.peak_mib:,.0f}"]  # fmt: skip
        tr_max, mr_max = TARGETS[name]
        if cc:
            tr, mr = ours.wall_s / cc.wall_s, ours.peak_mib / cc.peak_mib
            met = tr <= tr_max and (mr_max is None or mr <= mr_max)
            ok &= met
            target = f"time <= {tr_max}" + (f", memory <= {mr_max}" if mr_max else "") + (" met" if met else " MISSED")
            cells += [f"{cc.wall_s:.2f}", f"{cc.peak_mib:,.0f}", f"{tr:.2f}", f"{mr:.2f}", target]
        else:
            cells += ["-", "-", "-", "-", "no ccusage"]
        print("| " + " | ".join(cells) + " |")
    print()
    for name, _, ours, _, mine, theirs in rows:
        if mine and theirs:
            print(f"{name}: mc_pipeline {mine['calls']:,} calls, recorded cost ${mine['recorded_cost']:,.2f}; "
                  f"ccusage cost ${theirs.get('totalCost', 0):,.2f}")  # fmt: skip
        if ours.returncode != 0:
            ok = False
            print(f"{name}: mc_pipeline exited {ours.returncode}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
