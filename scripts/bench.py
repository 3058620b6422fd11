#!/usr/bin/env python3
"""`make bench`: measure the targets of issue 12, mc_pipeline side by side with ccusage, in ONE run.

Every measurement is a fresh process timed from outside (wall time from ``time.perf_counter``, user+sys
CPU and peak resident set of that child from ``os.wait4``). Absolute times vary between machines; the
targets are ratios between measurements of the same run:

| case | target |
| --- | --- |
| full build, big home (default 2.5 GB) | wall <= 1.0x ccusage; peak memory <= 0.4x ccusage |
| memory as history grows | peak at the big home <= 1.2x peak at the small home (1.2 GB) |
| +1% new sessions (small home) | its work <= 0.1x the full build's work (work = wall - empty-home wall) |
| the same new sessions added to the big home | wall <= 1.3x what they cost at the small home |
| one call appended to one live transcript (small home) | wall <= 1.5x the empty-home run |
| empty home | wall <= 2.0x ``python -c "import dagster, polars, pandera"`` |
| rerun of one day partition (small home) | its work <= 0.05x the full build's work |
| nothing new | wall <= 0.1x ccusage |

Steps, in this order (mc_pipeline = ``python -m mc_pipeline run --quiet`` with OPENCLAW_HOME, MC_DATA_DIR,
DAGSTER_HOME = MC_DATA_DIR/dagster_home and MC_TIMEZONE=UTC; every other MC_/OPENCLAW_/DAGSTER_ variable
is dropped):

  1. ``python -c "import dagster, polars, pandera"`` x3 (median);
  2. empty home: one run to create the instance and data dir, then 3 runs with ``--force`` (median);
  3. small home: full build into a fresh data dir, then ccusage; a run with nothing new (the CLI's fast
     path), then ccusage; a rerun of one day in the middle of the history (``python -m mc_pipeline rerun
     --day D`` when cli.py has that subcommand, else an in-process Dagster materialisation of the
     ``llm_calls`` and ``usage_daily`` partitions by a helper script written to the work dir); ~1% new
     sessions (``synth_home.py --add-mb``, fixed ``--add-seed``), then a run; one assistant call appended
     to the newest live transcript, then a run;
  4. big home: full build into a fresh data dir, then ccusage; the same new sessions added, then a run.

ccusage: ``ccusage openclaw daily --json --offline -z UTC --open-claw-path HOME``, found as ``$CCUSAGE``
or ``ccusage`` on PATH (``npm i ccusage@20.0.24``). Both tools' recorded cost is printed for the full builds.

Homes (``scripts/synth_home.py``, jsonl layout) are generated under the system temp dir, never under
``data/``, and cached between runs in ``$TMPDIR/mc-bench-homes/<MB>-<seed>-<days>d/home`` with a record of
their pristine state; the bench's own changes (added sessions, the appended call) are undone at the start
and end of every run (``--fresh`` regenerates). The big home comes from the same generator and seed with
the history made longer in proportion (``--big-days``, default 120 days x big/small): the same calls per
day over a longer history, ending on the same day.

    python scripts/bench.py                                 # 1.2 GB and 2.5 GB homes
    python scripts/bench.py --small-mb 200 --big-mb 400 --json /tmp/bench.json
    MC_BENCH_SMALL_MB=200 MC_BENCH_BIG_MB=400 make bench

The children run from a copy of ``mc_pipeline/`` (and ``synth_home.py``) made at the start, so that edits
made to the tree while the bench runs cannot mix code versions (``--no-snapshot`` runs it in place); the
output names the git HEAD and the uncommitted files measured.

Standard library and the project only (Polars is used in child processes, never in this one: a child's
peak RSS from wait4 includes what it shared with this process before exec).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where the children run from (cwd and PYTHONPATH): a copy of mc_pipeline/ and scripts/synth_home.py made
#: at the start (``snapshot_code``), or ROOT itself with ``--no-snapshot``.
CODE = ROOT


def synth_py() -> Path:
    return CODE / "scripts" / "synth_home.py"


HISTORY_DAYS = 120  # synth_home's default history
T0 = time.perf_counter()

#: case -> (metric, at most) pairs
TARGETS = {
    "full_big": (("wall", 1.0), ("memory", 0.4)),
    "memory_growth": (("peak", 1.2),),
    "add_small": (("work", 0.1),),
    "add_big": (("wall", 1.3),),
    "append": (("wall", 1.5),),
    "empty": (("wall", 2.0),),
    "rerun": (("work", 0.05),),
    "noop": (("wall", 0.1),),
}


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


# -- timing -------------------------------------------------------------------------------------------


@dataclass
class Timed:
    label: str
    cmd: list[str]
    wall_s: float
    cpu_s: float
    peak_mib: float
    returncode: int
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def said(self) -> str:
        """What an mc_pipeline run said about itself: why it ran (or that it took the fast path), failed checks."""
        out = []
        for ln in self.stdout.splitlines():
            if ln.startswith("mc_pipeline: reading ") and ln.endswith(")"):
                rest = ln[ln.find(" -> ") + 4 :]
                out.append("ran: " + rest[rest.find(" (") + 2 : -1])
            elif ln.startswith("mc_pipeline: nothing changed"):
                out.append("fast path: nothing changed")
            elif ln.startswith(("checks failed", "mc_pipeline: rebuilding")):
                out.append(ln.replace("mc_pipeline: ", "").split(" from ")[0])
        return "; ".join(out)

    def brief(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k not in ("stdout", "stderr")}, "said": self.said}


NOISE = ("BetaWarning", "PreviewWarning", "return fn(*args", "warnings.warn(")


def stderr_excerpt(t: Timed, head: int = 12, tail: int = 6) -> str:
    lines = [ln for ln in t.stderr.splitlines() if ln.strip() and not any(n in ln for n in NOISE)]
    if len(lines) > head + tail:
        lines = [*lines[:head], f"... ({len(lines) - head - tail} lines)", *lines[-tail:]]
    return "\n".join("    " + ln for ln in lines) or "    (no stderr)"


def timed(label: str, cmd: list[str], env: dict[str, str] | None = None) -> Timed:
    """Run ``cmd``; wall time, user+sys CPU and peak RSS of that child alone (os.wait4)."""
    log(f"{label}: {' '.join(cmd[:6])}{' ...' if len(cmd) > 6 else ''}")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=CODE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        t = Timed(
            label=label,
            cmd=[str(c) for c in cmd],
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_mib=usage.ru_maxrss / 1024,  # KiB on Linux
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )
    log(f"  -> {t.wall_s:.2f} s wall, {t.cpu_s:.2f} s CPU, {t.peak_mib:,.0f} MiB peak, exit {t.returncode}")
    if not t.ok:
        log(f"  {label} FAILED (exit {t.returncode}); stderr:\n{stderr_excerpt(t)}")
    return t


def median_of(runs: list[Timed], label: str) -> Timed | None:
    """One Timed holding the medians of ``runs`` (None when any failed)."""
    if not runs or any(not r.ok for r in runs):
        return next((r for r in runs if not r.ok), None)
    return Timed(
        label=label,
        cmd=runs[0].cmd,
        wall_s=statistics.median(r.wall_s for r in runs),
        cpu_s=statistics.median(r.cpu_s for r in runs),
        peak_mib=statistics.median(r.peak_mib for r in runs),
        returncode=0,
    )


def snapshot_code(work: Path) -> Path:
    """A copy of mc_pipeline/ (bytecode caches included) and scripts/synth_home.py as they are now: every
    measurement of this run uses the same code even when the tree is edited meanwhile."""
    code = work / "code"
    shutil.copytree(ROOT / "mc_pipeline", code / "mc_pipeline", symlinks=True)
    (code / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "synth_home.py", code / "scripts" / "synth_home.py")
    return code


def code_state() -> dict:
    """The tree the bench measures: git HEAD, uncommitted files of mc_pipeline/ + scripts/synth_home.py, and
    a digest of their contents (to notice edits made while the bench ran)."""
    digest = hashlib.sha256()
    for f in sorted([*(ROOT / "mc_pipeline").rglob("*"), ROOT / "scripts" / "synth_home.py"]):
        if f.is_file() and "__pycache__" not in f.parts:
            digest.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    state = {"digest": digest.hexdigest()[:16]}
    try:
        git = ["git", "-C", str(ROOT)]
        state["head"] = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                                       text=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "mc_pipeline", "scripts/synth_home.py"],
                               check=True, capture_output=True, text=True).stdout.splitlines()  # fmt: skip
        state["uncommitted"] = [ln[3:] for ln in dirty]
    except (OSError, subprocess.CalledProcessError):
        pass
    return state


# -- homes --------------------------------------------------------------------------------------------


def counted(name: str) -> bool:
    """Files both tools read: transcripts and their reset/deleted archives, never .bak copies."""
    return ".jsonl" in name and ".bak." not in name and not name.endswith(".lock")


def home_files(home: Path) -> dict[str, list[int]]:
    """relative path -> [size, mtime_ns] of every file under ``home``."""
    out = {}
    for dirpath, _, names in os.walk(home):
        for n in names:
            p = Path(dirpath) / n
            st = p.stat()
            out[p.relative_to(home).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def home_bytes(home: Path) -> tuple[int, int]:
    total = files = 0
    for f in (home / "agents").glob("*/sessions/*"):
        if counted(f.name):
            total += f.stat().st_size
            files += 1
    return total, files


def warm(home: Path) -> None:
    """Read every transcript once so both tools start from the same (warm) page cache (1 MiB buffer:
    this process stays small, see the module docstring)."""
    buf = bytearray(1 << 20)
    for f in (home / "agents").glob("*/sessions/*"):
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def synth_hash() -> str:
    return hashlib.sha256(synth_py().read_bytes()).hexdigest()[:16]


class CachedHome:
    """A generated home kept between bench runs: ``<dir>/home``, ``<dir>/pristine.json`` (every file's size
    and mtime right after generation) and ``<dir>/saved/`` (copies of the files a bench rewrites in place:
    ``sessions.json``). :meth:`restore` undoes what a bench did (new files removed, appended files
    truncated, saved files put back, mtimes reset)."""

    def __init__(self, root: Path, size_mb: float, seed: int, days: int):
        self.size_mb, self.seed, self.days = size_mb, seed, days
        self.dir = root / f"{size_mb:g}-{seed}-{days}d"
        self.home = self.dir / "home"
        self.record = self.dir / "pristine.json"
        self.saved = self.dir / "saved"
        self.stats: dict = {}

    def prepare(self, py: str, fresh: bool) -> None:
        if not fresh and self.record.exists() and self.home.exists():
            doc = json.loads(self.record.read_text())
            self.stats = doc.get("stats", {})
            if doc.get("synth_sha") != synth_hash():
                log(
                    f"note: scripts/synth_home.py changed since {self.home} was generated (--fresh regenerates)"
                )
            if self.restore():
                log(f"cached home: {self.home}")
                return
            log(f"cached home {self.home} could not be restored to its generated state: regenerating")
        self.generate(py)

    def generate(self, py: str) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        partial = self.dir / "home.partial"
        partial.parent.mkdir(parents=True, exist_ok=True)
        log(f"generating {self.size_mb:g} MB home (seed {self.seed}, {self.days} days) in {partial}")
        t0 = time.perf_counter()
        cmd = [py, str(synth_py()), "--out", str(partial), "--size-mb", f"{self.size_mb:g}", "--seed", str(self.seed),
               "--days", str(self.days)]  # fmt: skip
        proc = subprocess.run(cmd, cwd=CODE, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"synth_home.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        self.stats = json.loads(proc.stdout.strip().splitlines()[-1])
        self.stats.pop("home", None)
        partial.rename(self.home)
        files = home_files(self.home)
        for rel in files:
            if rel.endswith("sessions.json"):
                dst = self.saved / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.home / rel, dst)
        doc = {"size_mb": self.size_mb, "seed": self.seed, "days": self.days, "synth_sha": synth_hash(),
               "generated_s": round(time.perf_counter() - t0, 1), "stats": self.stats, "files": files}  # fmt: skip
        self.record.write_text(json.dumps(doc))
        log(f"  generated in {doc['generated_s']:.0f} s: {self.stats}")

    def restore(self) -> bool:
        """Put the home back as generated; False when that is not possible (a file lost or shrunk)."""
        if not self.record.exists() or not (self.home / "SYNTHETIC.txt").exists():
            return False
        want = json.loads(self.record.read_text())["files"]
        have = home_files(self.home)
        changed = 0
        for rel in set(have) - set(want):  # sessions added by a bench
            (self.home / rel).unlink()
            changed += 1
        for rel, (size, mtime_ns) in want.items():
            if rel not in have:
                return False
            if have[rel] == [size, mtime_ns]:
                continue
            path, saved = self.home / rel, self.saved / rel
            if saved.exists():
                shutil.copyfile(saved, path)
            elif have[rel][0] > size:  # a call appended by a bench
                os.truncate(path, size)
            elif have[rel][0] < size:
                return False
            if path.stat().st_size != size:
                return False
            os.utime(path, ns=(mtime_ns, mtime_ns))
            changed += 1
        if changed:
            log(f"  restored {changed} file(s) of {self.home} to their generated state")
        return True


def add_sessions(py: str, home: Path, add_mb: float, add_seed: int) -> dict:
    cmd = [py, str(synth_py()), "--out", str(home), "--add-mb", f"{add_mb:g}", "--add-seed", str(add_seed)]
    log(f"adding {add_mb:g} MB of new sessions (--add-seed {add_seed}) to {home}")
    proc = subprocess.run(cmd, cwd=CODE, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"synth_home.py --add-mb failed ({proc.returncode}): {proc.stderr[-2000:]}")
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"  added {stats.get('bytes', 0) / 1e6:,.1f} MB in {stats.get('files')} sessions")
    return stats


LIVE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.jsonl$")


def append_call(home: Path) -> dict:
    """Append one assistant call (the shape of an existing one of the same file: new 8-hex id, parentId =
    the file's last entry, timestamp now, new usage and cost) to the newest live transcript."""
    newest, newest_ts = None, ""
    for f in (home / "agents").glob("*/sessions/*.jsonl"):
        if not LIVE.match(f.name):
            continue
        with open(f, "rb") as fh:
            try:
                ts = json.loads(fh.readline()).get("timestamp", "")
            except ValueError:
                continue
        if ts > newest_ts:
            newest, newest_ts = f, ts
    if newest is None:
        raise RuntimeError(f"no live transcript under {home}")
    template, last_id, ids = None, None, set()
    with open(newest, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            e = json.loads(line)
            ids.add(e.get("id"))
            last_id = e.get("id", last_id)
            m = e.get("message") or {}
            if (
                e.get("type") == "message"
                and m.get("role") == "assistant"
                and m.get("provider") != "openclaw"
                and m.get("stopReason") in ("stop", "toolUse")
                and (m.get("usage") or {}).get("output")
            ):
                template = e
    if template is None:
        raise RuntimeError(f"no assistant call in {newest} to copy the shape of")
    rng = random.Random()
    new_id = f"{rng.getrandbits(32):08x}"
    while new_id in ids:
        new_id = f"{rng.getrandbits(32):08x}"
    now = datetime.now(UTC)
    e = dict(template)
    m = dict(template["message"])
    u, c = m["usage"], m["usage"].get("cost") or {}

    def rate(kind: str, default: float) -> float:  # the template's $ per token of each kind
        return c.get(kind, 0) / u[kind] if u.get(kind) else default

    p_in = rate("input", 3e-6)
    inp, outp, cread, cwrite = 1200, 350, u.get("cacheRead", 0), 800
    cost = {"input": inp * p_in, "output": outp * rate("output", 15e-6), "cacheRead": cread * rate("cacheRead", p_in * 0.1),
            "cacheWrite": cwrite * rate("cacheWrite", p_in * 1.25)}  # fmt: skip
    cost["total"] = sum(cost.values())
    m.update(content=[{"type": "text", "text": "synthetic call appended by mc_pipeline scripts/bench.py"}],
             usage={"input": inp, "output": outp, "cacheRead": cread, "cacheWrite": cwrite,
                    "totalTokens": inp + outp + cread + cwrite, "cost": cost},
             stopReason="stop", timestamp=int(now.timestamp() * 1000))  # fmt: skip
    if "responseId" in m:
        m["responseId"] = f"msg_{new_id}{rng.getrandbits(32):08x}"
    e.update(id=new_id, parentId=last_id, timestamp=now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
             message=m)  # fmt: skip
    with open(newest, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            lead = b"" if fh.read(1) == b"\n" else b"\n"
        else:
            lead = b""
        fh.write(lead + (json.dumps(e) + "\n").encode())
    log(
        f"appended call {new_id} ({m['provider']}/{m['model']}, ${cost['total']:.4f}) to {newest.relative_to(home)}"
    )
    return {"file": str(newest.relative_to(home)), "id": new_id, "cost_usd": cost["total"]}


# -- the two tools ------------------------------------------------------------------------------------


def find_ccusage() -> str | None:
    exe = os.environ.get("CCUSAGE") or shutil.which("ccusage")
    return exe if exe and Path(exe).exists() else None


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "OPENCLAW_", "DAGSTER_"))}


def pipeline_env(home: Path, data: Path) -> dict[str, str]:
    return {
        **clean_env(),
        "OPENCLAW_HOME": str(home),
        "MC_DATA_DIR": str(data),
        "DAGSTER_HOME": str(data / "dagster_home"),
        "MC_TIMEZONE": "UTC",
        "PYTHONPATH": os.pathsep.join(p for p in (str(CODE), os.environ.get("PYTHONPATH", "")) if p),
    }


PROBE = r"""
import json, sys
from pathlib import Path
import polars as pl
files = sorted((Path(sys.argv[1]) / "parquet" / "llm_calls").glob("day=*/*.parquet"))
out = {}
if files:
    lf = pl.scan_parquet(files, hive_partitioning=True)
    tr = lf.filter(pl.col("source") == "transcript")
    out["transcript"] = tr.select(calls=pl.len(), recorded_cost=pl.col("cost_recorded_usd").sum(),
                                  tokens=pl.col("total_tokens").sum()).collect().row(0, named=True)
    out["all_calls"] = lf.select(pl.len()).collect().item()
    days = lf.group_by("day").agg(calls=pl.len()).sort("day").collect()
    out["days"] = [[str(d), int(n)] for d, n in days.iter_rows()]
print(json.dumps(out))
"""

RERUN_HELPER = r'''"""Written by scripts/bench.py: rerun one day partition of llm_calls + usage_daily in process."""
import sys

import dagster as dg

from mc_pipeline.defs.resources import McSettings
from mc_pipeline.definitions import build_defs

day = sys.argv[1]
settings = McSettings.from_env()
try:  # the instance as the CLI makes it (already there after the full build)
    from pathlib import Path
    import os
    from mc_pipeline.cli import create_instance_storage, ensure_dagster_home
    ensure_dagster_home(settings)
    create_instance_storage(Path(os.environ["DAGSTER_HOME"]))
except Exception as exc:  # noqa: BLE001
    print(f"bench rerun helper: instance setup skipped: {exc}", file=sys.stderr)
defs = build_defs(settings)
keys = [dg.AssetKey("llm_calls"), dg.AssetKey("usage_daily")]
try:
    job = defs.resolve_implicit_global_asset_job_def()
except Exception:  # noqa: BLE001 - e.g. assets of several partitionings: a job of just these two
    job = dg.Definitions.merge(defs, dg.Definitions(jobs=[dg.define_asset_job("bench_rerun_day", selection=keys)])
                               ).resolve_job_def("bench_rerun_day")
result = job.execute_in_process(
    partition_key=day,
    asset_selection=keys,
    instance=dg.DagsterInstance.get(),
    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    raise_on_error=False,
)
sys.exit(0 if result.success else 1)
'''


class Tools:
    def __init__(self, py: str, work: Path, ccusage: str | None, rerun_via: str = "auto"):
        self.py, self.work, self.ccusage, self.rerun_via = py, work, ccusage, rerun_via

    def run(self, label: str, home: Path, data: Path, *flags: str) -> Timed:
        return timed(
            label, [self.py, "-m", "mc_pipeline", "run", "--quiet", *flags], pipeline_env(home, data)
        )

    def cc(self, label: str, home: Path) -> tuple[Timed | None, dict | None]:
        if not self.ccusage:
            return None, None
        cmd = [
            self.ccusage,
            "openclaw",
            "daily",
            "--json",
            "--offline",
            "-z",
            "UTC",
            "--open-claw-path",
            str(home),
        ]
        t = timed(label, cmd, clean_env())
        try:
            return t, json.loads(t.stdout)
        except ValueError:
            if t.ok:
                log(f"  {label}: output is not JSON: {t.stdout[:300]!r}")
            return t, None

    def probe(self, data: Path) -> dict:
        cmd = [self.py, "-c", PROBE, str(data)]
        proc = subprocess.run(cmd, cwd=CODE, env=clean_env(), check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            log(f"  reading llm_calls of {data} failed: {proc.stderr.strip().splitlines()[-1:]}")
            return {}
        return json.loads(proc.stdout)

    def rerun(self, home: Path, data: Path, day: str) -> tuple[Timed, str]:
        env = pipeline_env(home, data)
        cli = CODE / "mc_pipeline" / "cli.py"
        text = cli.read_text() if cli.exists() else ""
        if self.rerun_via != "helper" and re.search(
            r"""["']rerun["']""", text
        ):  # the CLI has it: ask it which options it takes
            ask = [self.py, "-m", "mc_pipeline", "rerun", "--help"]
            usage = subprocess.run(ask, cwd=CODE, env=env, check=False, capture_output=True, text=True)
            if usage.returncode == 0 and "--day" in usage.stdout:
                cmd = [self.py, "-m", "mc_pipeline", "rerun", "--day", day]
                cmd += ["--quiet"] if "--quiet" in usage.stdout else []  # as the runs it is compared with
                return timed(f"rerun of {day} (CLI)", cmd, env), "python -m mc_pipeline " + " ".join(cmd[3:])
        helper = self.work / "rerun_day.py"
        helper.write_text(RERUN_HELPER)
        return (
            timed(f"rerun of {day} (Dagster in process)", [self.py, str(helper), day], env),
            f"a Dagster in-process materialisation of llm_calls + usage_daily ({helper.name}; no rerun in cli.py)",
        )


def pick_day(days: list[list]) -> tuple[str, int] | None:
    """A day in the middle third of the history whose calls are closest to the median day's."""
    if not days:
        return None
    med = statistics.median(n for _, n in days)
    third = len(days) // 3
    middle = days[third : len(days) - third] or days
    centre = len(middle) / 2
    best = min(enumerate(middle), key=lambda x: (abs(x[1][1] - med), abs(x[0] - centre)))[1]
    return best[0], best[1]


# -- the cases ----------------------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    name: str
    measured: str = "-"
    reference: str = "-"
    ratios: list[tuple[str, float, float]] = field(default_factory=list)  # (metric, ratio, at most)
    failed: str | None = None
    note: str = ""

    @property
    def result(self) -> str:
        if self.failed:
            return "SKIPPED" if self.failed == "skipped" else "FAILED"
        if not self.ratios:
            return "-"
        missed = [m for m, r, lim in self.ratios if r > lim]
        return "MET" if not missed else "MISSED" + (f" ({', '.join(missed)})" if len(self.ratios) > 1 else "")

    def ratio_text(self) -> str:
        if not self.ratios:
            return "-"
        if len(self.ratios) == 1:
            return f"{self.ratios[0][1]:.3f}"
        return ", ".join(f"{m} {r:.3f}" for m, r, _ in self.ratios)

    def target_text(self) -> str:
        t = TARGETS[self.key]
        return ", ".join(f"{m} <= {lim}x" for m, lim in t) if len(t) > 1 else f"<= {t[0][1]}x"

    def as_json(self) -> dict:
        return {"case": self.key, "name": self.name, "measured": self.measured, "reference": self.reference,
                "ratios": {m: r for m, r, _ in self.ratios}, "targets": dict(TARGETS[self.key]),
                "result": self.result, "failed": self.failed, "note": self.note}  # fmt: skip


def s(t: Timed) -> str:
    return f"{t.wall_s:.2f} s"


def why_failed(*pairs: tuple[str, Timed | None]) -> str | None:
    for name, t in pairs:
        if t is None:
            return f"{name}: not measured"
        if not t.ok:
            return f"{name}: exit {t.returncode}"
    return None


def build_cases(m: dict[str, Timed | None], info: dict, small: str, big: str) -> list[Case]:
    cases = []
    empty = m.get("empty")
    full_s = m.get("full_small")
    full_work = (full_s.wall_s - empty.wall_s) if full_s and full_s.ok and empty and empty.ok else None

    c = Case("full_big", f"full build, {big} home")
    t, cc = m.get("full_big"), m.get("cc_full_big")
    c.failed = info.get("skip_big") or why_failed(("mc_pipeline", t), ("ccusage", cc))
    if t:
        c.measured = f"wall {s(t)}, peak {t.peak_mib:,.0f} MiB (CPU {t.cpu_s:.1f} s)"
    if cc:
        c.reference = f"ccusage: wall {s(cc)}, peak {cc.peak_mib:,.0f} MiB (CPU {cc.cpu_s:.1f} s)"
    if not c.failed:
        c.ratios = [("wall", t.wall_s / cc.wall_s, 1.0), ("memory", t.peak_mib / cc.peak_mib, 0.4)]
    cases.append(c)

    c = Case("memory_growth", f"memory as history grows ({small} -> {big})")
    c.failed = info.get("skip_big") or why_failed((f"full build {big}", t), (f"full build {small}", full_s))
    if t:
        c.measured = f"peak at {big}: {t.peak_mib:,.0f} MiB"
    if full_s:
        c.reference = f"peak at {small}: {full_s.peak_mib:,.0f} MiB"
    if not c.failed:
        c.ratios = [("peak", t.peak_mib / full_s.peak_mib, 1.2)]
    cases.append(c)

    c = Case("add_small", f"+{info['add_pct']:g}% new sessions ({small} home)")
    t = m.get("add_small")
    c.failed = info.get("add_small_error") or why_failed(("mc_pipeline", t), ("empty home", empty),
                                                         (f"full build {small}", full_s))  # fmt: skip
    if t and t.ok and empty and empty.ok:
        c.measured = f"wall {s(t)}, work {t.wall_s - empty.wall_s:.2f} s"
    if full_work is not None:
        c.reference = f"full build {small}: wall {s(full_s)}, work {full_work:.2f} s"
    if not c.failed:
        c.ratios = [("work", (t.wall_s - empty.wall_s) / full_work, 0.1)]
    cases.append(c)

    c = Case("add_big", f"the same new sessions added to the {big} home")
    tb = m.get("add_big")
    c.failed = (
        info.get("skip_big")
        or info.get("add_big_error")
        or why_failed(("mc_pipeline", tb), (f"+{info['add_pct']:g}% at {small}", t))
    )
    if tb:
        c.measured = f"wall {s(tb)}"
    if t:
        c.reference = f"at {small}: wall {s(t)}"
    if not c.failed:
        c.ratios = [("wall", tb.wall_s / t.wall_s, 1.3)]
    cases.append(c)

    c = Case("append", f"one call appended to one live transcript ({small} home)")
    t = m.get("append")
    c.failed = info.get("append_error") or why_failed(("mc_pipeline", t), ("empty home", empty))
    if t:
        c.measured = f"wall {s(t)}"
    if empty:
        c.reference = f"empty home: wall {s(empty)}"
    if not c.failed:
        c.ratios = [("wall", t.wall_s / empty.wall_s, 1.5)]
    cases.append(c)

    c = Case("empty", "empty home (median of 3, --force)")
    imp = m.get("imports")
    c.failed = why_failed(("mc_pipeline", empty), ("import", imp))
    if empty:
        c.measured = f"wall {s(empty)}, peak {empty.peak_mib:,.0f} MiB"
    if imp:
        c.reference = f"import dagster, polars, pandera: wall {s(imp)}, peak {imp.peak_mib:,.0f} MiB"
    if not c.failed:
        c.ratios = [("wall", empty.wall_s / imp.wall_s, 2.0)]
    cases.append(c)

    day = info.get("rerun_day")
    c = Case(
        "rerun",
        f"rerun of one day partition ({small} home" + (f", {day[0]}: {day[1]:,} calls)" if day else ")"),
    )
    t = m.get("rerun")
    c.failed = info.get("rerun_error") or why_failed(
        ("rerun", t), ("empty home", empty), (f"full build {small}", full_s)
    )
    c.note = info.get("rerun_mode", "")
    if t and t.ok and empty and empty.ok:
        c.measured = f"wall {s(t)}, work {t.wall_s - empty.wall_s:.2f} s"
    if full_work is not None:
        c.reference = f"full build {small}: work {full_work:.2f} s"
    if not c.failed:
        c.ratios = [("work", (t.wall_s - empty.wall_s) / full_work, 0.05)]
    cases.append(c)

    c = Case("noop", f"nothing new ({small} home)")
    t, cc = m.get("noop"), m.get("cc_noop")
    c.failed = why_failed(("mc_pipeline", t), ("ccusage", cc))
    if t:
        c.measured = f"wall {s(t)}" + (
            "" if "nothing changed" in t.stdout else f" (fast path NOT taken: {t.said})"
        )
    if cc:
        c.reference = f"ccusage: wall {s(cc)}"
    if not c.failed:
        c.ratios = [("wall", t.wall_s / cc.wall_s, 0.1)]
    cases.append(c)
    return cases


# -- main ---------------------------------------------------------------------------------------------


def env_float(*names: str, default: float) -> float:
    for n in names:
        if os.environ.get(n):
            return float(os.environ[n])
    return default


def size_label(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:g} MB"


def mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    tmp = Path(tempfile.gettempdir())
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--small-mb",
        type=float,
        default=env_float("MC_BENCH_SMALL_MB", "MC_BENCH_MB", default=1229),
        help="the small home, MB (default 1229 = 1.2 GB; env MC_BENCH_SMALL_MB or MC_BENCH_MB)",
    )
    p.add_argument(
        "--big-mb",
        type=float,
        default=env_float("MC_BENCH_BIG_MB", default=2560),
        help="the big home, MB (default 2560 = 2.5 GB; env MC_BENCH_BIG_MB)",
    )
    p.add_argument("--big-days", type=int, help=f"days of history of the big home (default {HISTORY_DAYS} x big/small: "
                   f"the same calls per day as the small home's {HISTORY_DAYS} days)")  # fmt: skip
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--add-pct", type=float, default=1.0, help="new sessions, %% of the small home (default 1)"
    )
    p.add_argument(
        "--add-seed", type=int, default=7, help="synth_home --add-seed of the new sessions (both homes)"
    )
    p.add_argument("--repeats", type=int, default=3, help="runs of the empty home and of the import (median)")
    p.add_argument(
        "--homes", type=Path, default=tmp / "mc-bench-homes", help="where generated homes are cached"
    )
    p.add_argument("--workdir", type=Path, default=tmp / "mc-bench", help="data dirs and helper scripts")
    p.add_argument("--fresh", action="store_true", help="regenerate the homes")
    p.add_argument("--skip-big", action="store_true", help="only the small home's cases")
    p.add_argument("--keep", action="store_true", help="keep the data dirs afterwards")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument(
        "--rerun-via",
        choices=("auto", "helper"),
        default="auto",
        help="auto: `python -m mc_pipeline "
        "rerun --day D` when cli.py has it, else the in-process helper; helper: always the helper",
    )
    p.add_argument(
        "--no-snapshot",
        action="store_true",
        help="run mc_pipeline/ in place instead of a copy "
        "made at the start (edits made while the bench runs would then mix versions)",
    )
    p.add_argument("--python", default=sys.executable, help="the Python of mc_pipeline (default: this one)")
    args = p.parse_args(argv)

    work, homes = args.workdir.resolve(), args.homes.resolve()
    for d in (work, homes):
        if any(part == "data" for part in d.parts):
            print(
                f"refusing to use {d}: synthetic homes and bench data never go under a data/ folder",
                file=sys.stderr,
            )
            return 2
    small_label, big_label = size_label(args.small_mb), size_label(args.big_mb)
    big_days = args.big_days or max(1, round(HISTORY_DAYS * args.big_mb / args.small_mb))
    add_mb = round(args.small_mb * args.add_pct / 100, 2)
    load_start = os.getloadavg()
    ccusage = find_ccusage()
    log(f"ccusage: {ccusage or 'not found (set CCUSAGE or put ccusage on PATH; npm i ccusage@20.0.24)'}")

    global CODE
    code_start = code_state()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if not args.no_snapshot:
        CODE = snapshot_code(work)
    log(f"code: {CODE} (HEAD {code_start.get('head', '?')}, {len(code_start.get('uncommitted', []))} uncommitted "
        f"file(s) of mc_pipeline/ and synth_home.py, digest {code_start['digest']})")  # fmt: skip

    small = CachedHome(homes, args.small_mb, args.seed, HISTORY_DAYS)
    big = None if args.skip_big else CachedHome(homes, args.big_mb, args.seed, big_days)
    for h in (small, big):
        if h:
            h.prepare(args.python, args.fresh)

    tools = Tools(args.python, work, ccusage, args.rerun_via)
    m: dict[str, Timed | None] = {}
    raw: list[Timed] = []
    info: dict = {"add_pct": args.add_pct, "add_mb": add_mb, "add_seed": args.add_seed}
    if args.skip_big:
        info["skip_big"] = "skipped"
    totals: dict[str, dict] = {}

    def keep(key: str, t: Timed | None) -> Timed | None:
        m[key] = t
        if t is not None:
            raw.append(t)
        return t

    def guarded(key: str, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failing case never stops the bench
            info[f"{key}_error"] = f"{type(exc).__name__}: {exc}"[:500]
            log(f"{key} FAILED: {info[f'{key}_error']}")

    try:
        # 1-2. the floor: imports, the empty home
        imports = [timed(f"import dagster, polars, pandera ({i + 1}/{args.repeats})",
                         [args.python, "-c", "import dagster, polars, pandera"], clean_env())
                   for i in range(args.repeats)]  # fmt: skip
        raw += imports
        m["imports"] = median_of(imports, "import (median)")
        empty_home, empty_data = work / "empty-home", work / "data-empty"
        empty_home.mkdir()
        keep("empty_first", tools.run("empty home, first run", empty_home, empty_data))
        empties = [tools.run(f"empty home --force ({i + 1}/{args.repeats})", empty_home, empty_data, "--force")
                   for i in range(args.repeats)]  # fmt: skip
        raw += empties
        m["empty"] = median_of(empties, "empty home (median)")

        # 3. the small home
        data = work / "data-small"
        log(f"warming the page cache: {small.home}")
        warm(small.home)
        keep("full_small", tools.run(f"full build {small_label}", small.home, data))
        cc, cc_json = tools.cc(f"ccusage {small_label}", small.home)
        keep("cc_full_small", cc)
        totals["full_small"] = {"mc_pipeline": tools.probe(data), "ccusage": (cc_json or {}).get("totals")}
        keep("noop", tools.run(f"nothing new {small_label}", small.home, data))
        keep("cc_noop", tools.cc(f"ccusage {small_label} (after nothing new)", small.home)[0])

        def rerun() -> None:
            day = pick_day(totals["full_small"]["mc_pipeline"].get("days", []))
            if day is None:
                raise RuntimeError("no llm_calls days to choose from (did the full build fail?)")
            info["rerun_day"] = day
            t, mode = tools.rerun(small.home, data, day[0])
            info["rerun_mode"] = mode
            keep("rerun", t)

        guarded("rerun", rerun)

        def add_small() -> None:
            info["added"] = add_sessions(args.python, small.home, add_mb, args.add_seed)
            keep("add_small", tools.run(f"+{args.add_pct:g}% {small_label}", small.home, data))

        guarded("add_small", add_small)

        def append() -> None:
            info["appended"] = append_call(small.home)
            keep("append", tools.run(f"one call appended {small_label}", small.home, data))

        guarded("append", append)

        # 4. the big home
        if big:
            data = work / "data-big"
            log(f"warming the page cache: {big.home}")
            warm(big.home)
            keep("full_big", tools.run(f"full build {big_label}", big.home, data))
            cc, cc_json = tools.cc(f"ccusage {big_label}", big.home)
            keep("cc_full_big", cc)
            totals["full_big"] = {"mc_pipeline": tools.probe(data), "ccusage": (cc_json or {}).get("totals")}

            def add_big() -> None:
                add_sessions(args.python, big.home, add_mb, args.add_seed)
                keep("add_big", tools.run(f"+{args.add_pct:g}% sessions on {big_label}", big.home, data))

            guarded("add_big", add_big)
    finally:
        for h in (small, big):
            if h:
                h.restore()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    code_end = code_state()

    cases = build_cases(m, info, small_label, big_label)
    out = []
    mem = mem_total_gib()
    out.append(f"machine: {os.cpu_count()} cores{f', {mem:.0f} GiB' if mem else ''}; load average (1/5/15 min) "
               f"{'/'.join(f'{x:.2f}' for x in load_start)} at start, {'/'.join(f'{x:.2f}' for x in load_end)} at end")  # fmt: skip
    uncommitted = code_start.get("uncommitted", [])
    out.append(f"code: HEAD {code_start.get('head', '?')}" + (f" + uncommitted {', '.join(uncommitted)}" if uncommitted
               else "") + (f"; run from a copy made at the start ({CODE})" if CODE != ROOT else "; run in place"))  # fmt: skip
    if code_end["digest"] != code_start["digest"]:
        out.append(f"note: mc_pipeline/ was edited while the bench ran (HEAD {code_end.get('head', '?')} at the end)"
                   + ("; the copy kept every measurement on the starting code" if CODE != ROOT
                      else ": the measurements may mix versions"))  # fmt: skip
    for label, h in ((small_label, small), (big_label, big)):
        if h:
            b, n = home_bytes(h.home)
            out.append(
                f"home {label}: {h.home} ({b / 1e6:,.0f} MB in {n:,} transcript files, {h.days} days, seed {h.seed})"
            )
    if "added" in info:
        out.append(f"new sessions: {info['added'].get('bytes', 0) / 1e6:,.1f} MB in {info['added'].get('files')} files "
                   f"(--add-mb {add_mb:g} --add-seed {args.add_seed})" + (", the same in both homes" if big else ""))  # fmt: skip
    out += [
        "",
        "| case | measured | reference | ratio | target | result |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    for c in cases:
        out.append(
            f"| {c.name} | {c.measured} | {c.reference} | {c.ratio_text()} | {c.target_text()} | {c.result} |"
        )
    out.append("")
    for c in cases:
        if c.failed and c.failed != "skipped":
            out.append(f"{c.key}: FAILED - {c.failed}")
        if c.note:
            out.append(f"{c.key}: measured as {c.note}")
    for key, label in (("full_small", small_label), ("full_big", big_label)):
        tot = totals.get(key)
        if not tot:
            continue
        ours, theirs = tot["mc_pipeline"].get("transcript"), tot["ccusage"]
        line = f"recorded cost, full build {label}: "
        line += (f"mc_pipeline ${ours['recorded_cost']:,.2f} ({ours['calls']:,} calls, {ours['tokens']:,} tokens)"
                 if ours else "mc_pipeline -")  # fmt: skip
        line += (
            f"; ccusage ${theirs['totalCost']:,.2f} ({theirs['totalTokens']:,} tokens)"
            if theirs
            else "; ccusage -"
        )
        if ours and theirs:
            line += f"; difference ${ours['recorded_cost'] - theirs['totalCost']:+,.2f}"
        out.append(line)
    out += ["", "All measurements (each a fresh process):", "",
            "| step | wall s | CPU s | peak RSS MiB | exit | mc_pipeline said |",
            "| --- | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
    for t in raw:
        out.append(
            f"| {t.label} | {t.wall_s:.2f} | {t.cpu_s:.2f} | {t.peak_mib:,.0f} | {t.returncode} | {t.said} |"
        )
    for t in raw:
        if not t.ok:
            out += ["", f"{t.label}: exit {t.returncode}, stderr:", stderr_excerpt(t)]
    print("\n".join(out))

    if args.json:
        doc = {
            "machine": {"cores": os.cpu_count(), "mem_gib": mem, "loadavg_start": load_start, "loadavg_end": load_end},
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"big_days": big_days},
            "ccusage": ccusage,
            "code": {"start": code_start, "end": code_end, "snapshot": str(CODE) if CODE != ROOT else None},
            "homes": {lbl: {"path": str(h.home), "days": h.days, "seed": h.seed, "stats": h.stats}
                      for lbl, h in ((small_label, small), (big_label, big)) if h},
            "cases": [c.as_json() for c in cases],
            "measurements": [t.brief() for t in raw],
            "medians": {k: m[k].brief() for k in ("imports", "empty") if m.get(k)},
            "totals": {k: {"mc_pipeline": {kk: vv for kk, vv in v["mc_pipeline"].items() if kk != "days"},
                           "ccusage": v["ccusage"]} for k, v in totals.items()},
            "info": info,
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        log(f"results written to {args.json}")
    return 0 if all(c.result == "MET" for c in cases if c.result != "SKIPPED") else 1


if __name__ == "__main__":
    sys.exit(main())
