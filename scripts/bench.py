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
| fleet of 4 homes (300 MB, upgraded layout), MC_MAX_CONCURRENT=2 | wall <= 0.65x the 4 run singly, in turn |
| Postgres fixed cost: fleet of 4 empty homes | wall <= 1.5x the same on SQLite (one empty home: reported) |

Steps, in this order (mc_pipeline = ``python -m mc_pipeline run --quiet`` with OPENCLAW_HOME, MC_DATA_DIR,
DAGSTER_HOME = MC_DATA_DIR/dagster_home and MC_TIMEZONE=UTC; every other MC_/OPENCLAW_/DAGSTER_ variable
is dropped):

  1. ``python -c "import dagster, polars, pandera"`` x3 (median);
  2. empty home: one run to create the instance and data dir, then 3 runs with ``--force`` (median);
  3. small home: full build into a fresh data dir, then ccusage; a run with nothing new (the CLI's fast path),
     then ccusage; a rerun of one day in the middle of the history (``python -m mc_pipeline rerun --day D``
     when mc_pipeline/runtime/cli.py has that subcommand, else an in-process Dagster materialisation of the
     ``llm_calls`` and ``usage_daily`` partitions by a helper script written to the work dir); ~1% new
     sessions (``synth_home.py --add-mb``, fixed ``--add-seed``), then a run; one assistant call appended to
     the newest live transcript, then a run;
  4. big home: full build into a fresh data dir, then ccusage; the same new sessions added, then a run;
  5. fleet (``--fleet-homes`` homes of ``--fleet-mb`` MB, ``synth_home.py --layout upgraded``, seeds
     ``--fleet-seed``, +1, ...; every file of each read once first), ``--fleet-repeats`` times, the order
     rotated each time, every run into a fresh data dir: ONE fleet run (``MC_OPENCLAW_HOMES=h1=...,h2=...``,
     ``MC_MAX_CONCURRENT=--fleet-concurrent``); the same homes as single runs (OPENCLAW_HOME) one after the
     other, wall times summed; the fleet run with ``MC_MAX_CONCURRENT=1``. Medians. Each fleet run's
     ``usage-data.json`` summary (totalRequests, totalCost) must equal the sum of the single runs' (the case
     FAILS otherwise). Memory: besides wait4's peak (one process: the fleet's step processes are the
     forkserver's children, never waited for by the CLI), the peak of the summed PSS of the whole process
     tree, sampled every 0.2 s (for every run of this case alike). Each fleet run's steps are read back from
     its Dagster event log (STEP_WORKER_STARTING / STEP_START / STEP_SUCCESS) by a helper child process;
  6. Postgres fixed cost: a PostgreSQL server (``mc_pipeline_tests/postgres_server.py``; skipped, saying why,
     without initdb/pg_ctl), empty homes (``--fleet-homes`` of them as a fleet, and one alone), ``run
     --force`` with ``MC_DAGSTER_POSTGRES_URL`` (one fresh database per configuration) and without it (SQLite
     files): a first run of each (it creates the storage; reported apart), then ``--pg-repeats`` runs of each,
     interleaved; medians.

``--only core,fleet,postgres`` (env ``MC_BENCH_ONLY``) runs some of them: ``core`` is steps 1-4 (the eight
cases of issue 12), ``fleet`` step 5, ``postgres`` step 6; all by default.

ccusage: ``ccusage openclaw daily --json --offline -z UTC --open-claw-path HOME``, found as ``$CCUSAGE``,
``.tools/node_modules/.bin/ccusage`` (``make bench`` installs it) or ``ccusage`` on PATH (``npm i
ccusage@20.0.24``). Both tools' recorded cost is printed for the full builds.

Homes (``scripts/synth_home.py``, jsonl layout) are generated under the system temp dir, never under
``data/``, and cached between runs in ``$TMPDIR/mc-bench-homes/<MB>-<seed>-<days>d/home`` with a record of
their pristine state; the bench's own changes (added sessions, the appended call) are undone at the start
and end of every run (``--fresh`` regenerates). The big home comes from the same generator and seed with
the history made longer in proportion (``--big-days``, default 120 days x big/small): the same calls per
day over a longer history, ending on the same day.

    python scripts/bench.py                                 # 1.2 GB and 2.5 GB homes
    python scripts/bench.py --small-mb 200 --big-mb 400 --json /tmp/bench.json
    MC_BENCH_SMALL_MB=200 MC_BENCH_BIG_MB=400 make bench
    python scripts/bench.py --only fleet                    # the fleet case alone (~10 min)
    python scripts/bench.py --only postgres                 # the Postgres fixed cost alone (~3 min)
    MC_BENCH_ONLY=fleet,postgres make bench

The children run from a copy of ``mc_pipeline/`` (and ``synth_home.py``, with the ``mc_pipeline_tests``
module it writes upgraded homes with) made at the start, so that edits made to the tree while the bench runs
cannot mix code versions (``--no-snapshot`` runs it in place); the output names the git HEAD and the
uncommitted files measured.

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
import threading
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
    "fleet": (("vs sequential", 0.65),),
    "postgres_fleet": (("fixed cost", 1.5),),
    "postgres_single": (),  # reported, no target
}
#: The groups of cases ``--only`` selects.
GROUPS = ("core", "fleet", "postgres")


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
    tree_peak_mib: float | None = None  # peak summed PSS of the process and its descendants (TreeMemory)
    started_at: float = 0.0  # epoch seconds at launch (to place the run's Dagster events)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def said(self) -> str:
        """What an mc_pipeline run said about itself: why it ran (or that it took the fast path), failed
        checks."""
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


class TreeMemory(threading.Thread):
    """The peak of the summed PSS (proportional set size: shared pages split between the processes sharing
    them) of a process and all its descendants, sampled every ``every`` s from /proc. wait4's peak is one
    process's: a fleet's step processes are children of Dagster's forkserver, which the CLI never waits
    for."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak_kib = pid, every, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.peak_kib = max(self.peak_kib, self.sample())
            except OSError:
                pass
            self.done.wait(self.every)

    def sample(self) -> int:
        children: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat", "rb") as fh:
                        ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(d))
        total, todo = 0, [self.pid]
        while todo:
            pid = todo.pop()
            todo += children.get(pid, [])
            total += pss_kib(pid)
        return total


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:  # no smaps_rollup (old kernel): resident pages
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, IndexError, ValueError):
        return 0


def timed(label: str, cmd: list[str], env: dict[str, str] | None = None, tree: bool = False) -> Timed:
    """Run ``cmd``; wall time, user+sys CPU and peak RSS of that child alone (os.wait4); with ``tree``, also
    the peak memory of its whole process tree (:class:`TreeMemory`)."""
    log(f"{label}: {' '.join(cmd[:6])}{' ...' if len(cmd) > 6 else ''}")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started_at = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=CODE)
        sampler = TreeMemory(proc.pid) if tree else None
        if sampler:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if sampler:
            sampler.done.set()
            sampler.join()
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
            tree_peak_mib=sampler.peak_kib / 1024 if sampler else None,
            started_at=started_at,
        )
    tree_text = f" ({t.tree_peak_mib:,.0f} MiB process tree)" if t.tree_peak_mib is not None else ""
    log(
        f"  -> {t.wall_s:.2f} s wall, {t.cpu_s:.2f} s CPU, {t.peak_mib:,.0f} MiB peak{tree_text}, "
        f"exit {t.returncode}"
    )
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
        tree_peak_mib=(
            statistics.median(r.tree_peak_mib for r in runs)
            if all(r.tree_peak_mib is not None for r in runs)
            else None
        ),
    )


#: What synth_home.py --layout upgraded imports from the repo (its agent databases' writer).
SYNTH_TEST_MODULES = ("mc_pipeline_tests/__init__.py", "mc_pipeline_tests/openclaw_db.py")


def snapshot_code(work: Path) -> Path:
    """A copy of mc_pipeline/ (bytecode caches included) and scripts/synth_home.py (with the test modules it
    imports) as they are now: every measurement of this run uses the same code even when the tree is edited
    meanwhile."""
    code = work / "code"
    shutil.copytree(ROOT / "mc_pipeline", code / "mc_pipeline", symlinks=True)
    (code / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "synth_home.py", code / "scripts" / "synth_home.py")
    (code / "mc_pipeline_tests").mkdir()
    for rel in SYNTH_TEST_MODULES:
        shutil.copy2(ROOT / rel, code / rel)
    return code


def code_state() -> dict:
    """The tree the bench measures: git HEAD, uncommitted files of mc_pipeline/ + scripts/synth_home.py, and
    a digest of their contents (to notice edits made while the bench ran)."""
    digest = hashlib.sha256()
    for f in sorted(
        [
            *(ROOT / "mc_pipeline").rglob("*"),
            ROOT / "scripts" / "synth_home.py",
            *(ROOT / rel for rel in SYNTH_TEST_MODULES),
        ]
    ):
        if f.is_file() and "__pycache__" not in f.parts:
            digest.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    state = {"digest": digest.hexdigest()[:16]}
    try:
        git = ["git", "-C", str(ROOT)]
        state["head"] = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            [
                *git,
                "status",
                "--porcelain",
                "--",
                "mc_pipeline",
                "scripts/synth_home.py",
                *SYNTH_TEST_MODULES,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
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


def warm_tree(home: Path) -> int:
    """:func:`warm` for every file of ``home`` (an upgraded home keeps most calls in SQLite databases and
    ``.zst`` archives); returns the bytes read."""
    buf, total = bytearray(1 << 20), 0
    for dirpath, _, names in os.walk(home):
        for n in names:
            with open(Path(dirpath) / n, "rb", buffering=0) as fh:
                while k := fh.readinto(buf):
                    total += k
    return total


def synth_hash() -> str:
    return hashlib.sha256(synth_py().read_bytes()).hexdigest()[:16]


class CachedHome:
    """A generated home kept between bench runs: ``<dir>/home``, ``<dir>/pristine.json`` (every file's size
    and mtime right after generation) and ``<dir>/saved/`` (copies of the files a bench rewrites in place:
    ``sessions.json``). :meth:`restore` undoes what a bench did (new files removed, appended files
    truncated, saved files put back, mtimes reset). ``layout="upgraded"`` (synth_home.py ``--layout``) with
    ``days=None``: the history synth_home.py chooses for that layout."""

    def __init__(self, root: Path, size_mb: float, seed: int, days: int | None, layout: str = "jsonl"):
        self.size_mb, self.seed, self.days, self.layout = size_mb, seed, days, layout
        suffix = (f"-{days}d" if days else "") + ("" if layout == "jsonl" else f"-{layout}")
        self.dir = root / f"{size_mb:g}-{seed}{suffix}"
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
                    f"note: scripts/synth_home.py changed since {self.home} was generated "
                    "(--fresh regenerates)"
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
        log(
            f"generating {self.size_mb:g} MB home (seed {self.seed}, {self.days or 'default'} days, "
            f"{self.layout} layout) in {partial}"
        )
        t0 = time.perf_counter()
        cmd = [
            py,
            str(synth_py()),
            "--out",
            str(partial),
            "--size-mb",
            f"{self.size_mb:g}",
            "--seed",
            str(self.seed),
        ]
        cmd += ["--days", str(self.days)] if self.days else []
        cmd += ["--layout", self.layout] if self.layout != "jsonl" else []
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
        doc = {
            "size_mb": self.size_mb,
            "seed": self.seed,
            "days": self.days,
            "layout": self.layout,
            "synth_sha": synth_hash(),
            "generated_s": round(time.perf_counter() - t0, 1),
            "stats": self.stats,
            "files": files,
        }
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
    cost = {
        "input": inp * p_in,
        "output": outp * rate("output", 15e-6),
        "cacheRead": cread * rate("cacheRead", p_in * 0.1),
        "cacheWrite": cwrite * rate("cacheWrite", p_in * 1.25),
    }
    cost["total"] = sum(cost.values())
    m.update(
        content=[{"type": "text", "text": "synthetic call appended by mc_pipeline scripts/bench.py"}],
        usage={
            "input": inp,
            "output": outp,
            "cacheRead": cread,
            "cacheWrite": cwrite,
            "totalTokens": inp + outp + cread + cwrite,
            "cost": cost,
        },
        stopReason="stop",
        timestamp=int(now.timestamp() * 1000),
    )
    if "responseId" in m:
        m["responseId"] = f"msg_{new_id}{rng.getrandbits(32):08x}"
    e.update(
        id=new_id,
        parentId=last_id,
        timestamp=now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        message=m,
    )
    with open(newest, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            lead = b"" if fh.read(1) == b"\n" else b"\n"
        else:
            lead = b""
        fh.write(lead + (json.dumps(e) + "\n").encode())
    log(
        f"appended call {new_id} ({m['provider']}/{m['model']}, ${cost['total']:.4f}) "
        f"to {newest.relative_to(home)}"
    )
    return {"file": str(newest.relative_to(home)), "id": new_id, "cost_usd": cost["total"]}


# -- the two tools ------------------------------------------------------------------------------------


def find_ccusage() -> str | None:
    """$CCUSAGE, else the one ``make test``/``make bench`` install under .tools/, else ccusage on PATH."""
    local = ROOT / ".tools" / "node_modules" / ".bin" / "ccusage"
    exe = os.environ.get("CCUSAGE") or (str(local) if local.exists() else shutil.which("ccusage"))
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


def fleet_env(homes: list[tuple[str, Path]], data: Path, concurrent: int | None) -> dict[str, str]:
    """:func:`pipeline_env` of a fleet: MC_OPENCLAW_HOMES=name=path,... instead of OPENCLAW_HOME, and
    MC_MAX_CONCURRENT (None: unset, the machine's cores)."""
    env = {k: v for k, v in pipeline_env(Path(), data).items() if k != "OPENCLAW_HOME"}
    env["MC_OPENCLAW_HOMES"] = ",".join(f"{name}={path}" for name, path in homes)
    if concurrent is not None:
        env["MC_MAX_CONCURRENT"] = str(concurrent)
    return env


def usage_totals(data: Path) -> tuple[int, float] | None:
    """(totalRequests, totalCost) of the summary of ``data``/usage-data.json (None when unreadable)."""
    try:
        summary = json.loads((data / "usage-data.json").read_text())["summary"]
        return int(summary["totalRequests"]), float(summary["totalCost"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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

RERUN_HELPER = r'''"""Written by scripts/bench.py: rerun one day partition of llm_calls + usage_daily in
process."""
import sys

import dagster as dg

from mc_pipeline.defs.resources import McSettings
from mc_pipeline.definitions import build_defs

day = sys.argv[1]
settings = McSettings.from_env()
try:  # the instance as the CLI makes it (already there after the full build)
    from pathlib import Path
    import os
    from mc_pipeline.runtime.cli import create_instance_storage, ensure_dagster_home
    ensure_dagster_home(settings)
    create_instance_storage(Path(os.environ["DAGSTER_HOME"]))
except Exception as exc:  # noqa: BLE001
    print(f"bench rerun helper: instance setup skipped: {exc}", file=sys.stderr)
defs = build_defs(settings)
keys = [dg.AssetKey("llm_calls"), dg.AssetKey("usage_daily")]
try:
    job = defs.resolve_implicit_global_asset_job_def()
except Exception:  # noqa: BLE001 - e.g. assets of several partitionings: a job of just these two
    job = dg.Definitions.merge(
        defs, dg.Definitions(jobs=[dg.define_asset_job("bench_rerun_day", selection=keys)])
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


STEPS_HELPER = r'''"""Written by scripts/bench.py: the last run of a Dagster instance, step by step, from its
event log."""
import json
import sys

import dagster as dg

KINDS = ("STEP_WORKER_STARTING", "STEP_WORKER_STARTED", "STEP_START", "STEP_SUCCESS", "STEP_FAILURE")
instance = dg.DagsterInstance.from_config(sys.argv[1])
runs = instance.get_runs(limit=1)
if not runs:
    print(json.dumps({}))
    sys.exit(0)
run = runs[0]
first = last = None
steps = {}
for rec in instance.all_logs(run.run_id):
    first = rec.timestamp if first is None else first
    last = rec.timestamp
    ev = rec.dagster_event
    if ev is not None and ev.event_type_value in KINDS and ev.step_key:
        steps.setdefault(ev.step_key, {})[ev.event_type_value] = rec.timestamp
print(json.dumps({"run_id": run.run_id, "status": str(run.status), "first_event": first, "last_event": last,
                  "steps": steps}))
'''


class Tools:
    def __init__(self, py: str, work: Path, ccusage: str | None, rerun_via: str = "auto"):
        self.py, self.work, self.ccusage, self.rerun_via = py, work, ccusage, rerun_via

    def run(
        self,
        label: str,
        home: Path,
        data: Path,
        *flags: str,
        extra: dict[str, str] | None = None,
        tree: bool = False,
    ) -> Timed:
        return timed(
            label,
            [self.py, "-m", "mc_pipeline", "run", "--quiet", *flags],
            pipeline_env(home, data) | (extra or {}),
            tree=tree,
        )

    def fleet(
        self,
        label: str,
        homes: list[tuple[str, Path]],
        data: Path,
        concurrent: int | None,
        *flags: str,
        extra: dict[str, str] | None = None,
        tree: bool = False,
    ) -> Timed:
        return timed(
            label,
            [self.py, "-m", "mc_pipeline", "run", "--quiet", *flags],
            fleet_env(homes, data, concurrent) | (extra or {}),
            tree=tree,
        )

    def steps(self, dagster_home: Path, extra: dict[str, str] | None = None) -> dict:
        """The last run of the instance in ``dagster_home``, step by step, from its event log (STEPS_HELPER);
        ``extra``: the run's MC_DAGSTER_POSTGRES_URL, for an instance in Postgres."""
        helper = self.work / "run_steps.py"
        if not helper.exists():
            helper.write_text(STEPS_HELPER)
        env = clean_env() | {
            "DAGSTER_HOME": str(dagster_home),
            "PYTHONPATH": pipeline_env(Path(), Path())["PYTHONPATH"],
            **(extra or {}),
        }
        proc = subprocess.run(
            [self.py, str(helper), str(dagster_home)],
            cwd=CODE,
            env=env,
            check=False,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            log(f"  reading the event log of {dagster_home} failed: {proc.stderr.strip().splitlines()[-1:]}")
            return {}
        return json.loads(proc.stdout.strip().splitlines()[-1])

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
        cli = CODE / "mc_pipeline" / "runtime" / "cli.py"
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
            f"a Dagster in-process materialisation of llm_calls + usage_daily "
            f"({helper.name}; no rerun in cli.py)",
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
    ratios: list[tuple[str, float, float | None]] = field(default_factory=list)  # (metric, ratio, at most)
    failed: str | None = None
    note: str = ""

    @property
    def skipped(self) -> bool:
        return bool(self.failed) and (self.failed == "skipped" or self.failed.startswith("skipped:"))

    @property
    def result(self) -> str:
        if self.failed:
            return "SKIPPED" if self.skipped else "FAILED"
        if not self.ratios:
            return "-"
        if all(lim is None for _, _, lim in self.ratios):  # reported, no target
            return "INFO"
        missed = [m for m, r, lim in self.ratios if lim is not None and r > lim]
        return "MET" if not missed else "MISSED" + (f" ({', '.join(missed)})" if len(self.ratios) > 1 else "")

    def ratio_text(self) -> str:
        if not self.ratios:
            return "-"
        if len(self.ratios) == 1:
            return f"{self.ratios[0][1]:.3f}"
        return ", ".join(f"{m} {r:.3f}" for m, r, _ in self.ratios)

    def target_text(self) -> str:
        t = TARGETS[self.key]
        if not t:
            return "- (reported)"
        return ", ".join(f"{m} <= {lim}x" for m, lim in t) if len(t) > 1 else f"<= {t[0][1]}x"

    def as_json(self) -> dict:
        return {
            "case": self.key,
            "name": self.name,
            "measured": self.measured,
            "reference": self.reference,
            "ratios": {m: r for m, r, _ in self.ratios},
            "targets": dict(TARGETS[self.key]),
            "result": self.result,
            "failed": self.failed,
            "note": self.note,
        }


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
    c.failed = info.get("add_small_error") or why_failed(
        ("mc_pipeline", t), ("empty home", empty), (f"full build {small}", full_s)
    )
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


# -- the fleet and Postgres cases ---------------------------------------------------------------------


def summed(runs: list[Timed], label: str) -> Timed:
    """Runs one after another as one measurement: wall and CPU summed, the highest peaks."""
    trees = [r.tree_peak_mib for r in runs if r.tree_peak_mib is not None]
    return Timed(
        label=label,
        cmd=runs[0].cmd if runs else [],
        wall_s=sum(r.wall_s for r in runs),
        cpu_s=sum(r.cpu_s for r in runs),
        peak_mib=max((r.peak_mib for r in runs), default=0.0),
        returncode=next((r.returncode for r in runs if not r.ok), 0),
        stdout="\n".join(r.stdout for r in runs),
        tree_peak_mib=max(trees) if trees else None,
    )


def step_profile(doc: dict, t: Timed) -> dict:
    """Where a fleet run's wall time went, from its event log (Tools.steps): before the run's first event
    (interpreter, imports, instance, job), each step (queued = STEP_WORKER_STARTING, started = STEP_START,
    ended = STEP_SUCCESS/FAILURE, seconds after launch), after the last event (summary, exit)."""
    if not doc.get("steps") or not t.started_at:
        return {}
    rows = []
    for key, ev in doc["steps"].items():
        start, end = ev.get("STEP_START"), ev.get("STEP_SUCCESS") or ev.get("STEP_FAILURE")
        if start is None or end is None:
            continue
        queued = ev.get("STEP_WORKER_STARTING", start)
        rows.append(
            {
                "step": key,
                "queued": round(queued - t.started_at, 2),
                "start": round(start - t.started_at, 2),
                "end": round(end - t.started_at, 2),
            }
        )
    rows.sort(key=lambda r: (r["queued"], r["step"]))
    kinds: dict[str, list[float]] = {}
    for r in rows:
        kinds.setdefault(r["step"].split("__")[-1], []).append(r["end"] - r["start"])
    span = (rows[-1]["end"] - rows[0]["queued"]) if rows else 0.0
    return {
        "wall_s": round(t.wall_s, 2),
        "before_first_event_s": round(doc["first_event"] - t.started_at, 2),
        "after_last_event_s": round(t.started_at + t.wall_s - doc["last_event"], 2),
        "steps_span_s": round(span, 2),
        "step_s": round(sum(r["end"] - r["start"] for r in rows), 2),  # inside the steps' own code
        "step_startup_s": round(sum(r["start"] - r["queued"] for r in rows), 2),  # process fork + step setup
        "mean_running": round(sum(r["end"] - r["queued"] for r in rows) / span, 2) if span else None,
        "by_kind": {k: {"n": len(v), "total_s": round(sum(v), 2)} for k, v in kinds.items()},
        "steps": rows,
    }


def profile_text(p: dict) -> str:
    kinds = ", ".join(f"{k} {v['n']} x {v['total_s'] / v['n']:.2f} s" for k, v in p["by_kind"].items())
    return (
        f"wall {p['wall_s']:.2f} s = {p['before_first_event_s']:.2f} s before the first event + "
        f"{p['wall_s'] - p['before_first_event_s'] - p['after_last_event_s']:.2f} s of events + "
        f"{p['after_last_event_s']:.2f} s after the last; {len(p['steps'])} steps: "
        f"{p['step_s']:.2f} s in steps ({kinds}), {p['step_startup_s']:.2f} s queued -> started; "
        f"{p['mean_running']} steps running on average over {p['steps_span_s']:.2f} s"
    )


def closest_to_median(runs: list[Timed]) -> int | None:
    ok = [i for i, r in enumerate(runs) if r.ok]
    if not ok:
        return None
    med = statistics.median(runs[i].wall_s for i in ok)
    return min(ok, key=lambda i: abs(runs[i].wall_s - med))


def same_totals(a: tuple[int, float] | None, b: tuple[int, float] | None) -> bool:
    """The same calls and the same cost to a millionth of a dollar (sums in another order differ by
    ~1e-12)."""
    return (
        a is not None and b is not None and a[0] == b[0] and abs(a[1] - b[1]) <= max(1e-6, 1e-12 * abs(b[1]))
    )


def run_fleet(
    args, tools: Tools, work: Path, fleet: list[CachedHome], m: dict, raw: list[Timed], info: dict
) -> None:
    """Step 5: one fleet run (MC_MAX_CONCURRENT=--fleet-concurrent) vs the homes one after another as single
    runs vs the fleet run with MC_MAX_CONCURRENT=1, --fleet-repeats times in rotated order; the totals
    checked."""
    homes = [(f"h{i + 1}", h.home) for i, h in enumerate(fleet)]
    for h in fleet:
        log(f"warming the page cache: {h.home}")
        warm_tree(h.home)
    n, conc = args.fleet_repeats, args.fleet_concurrent
    kinds = ["parallel", "sequential", "one"]
    runs: dict[str, list[Timed]] = {k: [] for k in kinds}
    profiles: dict[str, list[dict]] = {"parallel": [], "one": []}
    checks = []
    for i in range(n):
        order = kinds[i % 3 :] + kinds[: i % 3]
        totals: dict[str, tuple[int, float] | None] = {}
        for kind in order:
            if kind == "sequential":
                singles, found = [], []
                for name, home in homes:
                    data = work / f"fleet-{i + 1}-alone-{name}"
                    t = tools.run(f"fleet home {name} alone ({i + 1}/{n})", home, data, tree=True)
                    raw.append(t)
                    singles.append(t)
                    found.append(usage_totals(data))
                runs[kind].append(summed(singles, f"{len(homes)} homes one after another ({i + 1}/{n})"))
                totals["singles"] = (
                    (sum(f[0] for f in found), sum(f[1] for f in found)) if all(found) else None
                )
                totals["each"] = found
                continue
            c = conc if kind == "parallel" else 1
            data = work / f"fleet-{i + 1}-{kind}"
            t = tools.fleet(
                f"fleet of {len(homes)}, MC_MAX_CONCURRENT={c} ({i + 1}/{n})", homes, data, c, tree=True
            )
            raw.append(t)
            runs[kind].append(t)
            totals[kind] = usage_totals(data)
            profiles[kind].append(step_profile(tools.steps(data / "dagster_home"), t))
        check = {"repeat": i + 1, **{k: totals.get(k) for k in ("singles", "parallel", "one", "each")}}
        check["equal"] = all(same_totals(totals.get(k), totals.get("singles")) for k in ("parallel", "one"))
        checks.append(check)
        if not check["equal"]:
            log(
                f"FLEET TOTALS DIFFER (repeat {i + 1}): singles {totals.get('singles')}, "
                f"fleet MC_MAX_CONCURRENT={conc} {totals.get('parallel')}, "
                f"MC_MAX_CONCURRENT=1 {totals.get('one')}"
            )
    info["fleet_totals"] = checks
    bad = [c for c in checks if not c["equal"]]
    if bad:
        c = bad[0]
        info["fleet_error"] = (
            f"TOTALS DIFFER in {len(bad)} of {len(checks)} repeat(s): (totalRequests, totalCost) "
            f"of the {len(homes)} single runs summed {c['singles']}, fleet "
            f"MC_MAX_CONCURRENT={conc} {c['parallel']}, MC_MAX_CONCURRENT=1 {c['one']} "
            f"(repeat {c['repeat']})"
        )
    for kind, key, label in (
        ("parallel", "fleet_parallel", f"fleet, MC_MAX_CONCURRENT={conc} (median)"),
        ("sequential", "fleet_sequential", "homes one after another (median of sums)"),
        ("one", "fleet_one", "fleet, MC_MAX_CONCURRENT=1 (median)"),
    ):
        m[key] = median_of(runs[kind], label)
    info["fleet_profiles"] = profiles
    info["fleet_walls"] = {kind: [round(t.wall_s, 2) for t in runs[kind]] for kind in kinds}
    for kind in ("parallel", "one"):
        k = closest_to_median(runs[kind])
        if k is not None and profiles[kind][k]:
            info[f"fleet_profile_{kind}"] = {"repeat": k + 1, **profiles[kind][k]}


def run_postgres(args, tools: Tools, work: Path, m: dict, raw: list[Timed], info: dict) -> None:
    """Step 6: empty homes, ``run --force`` on a Postgres-backed instance vs SQLite files: a first run of each
    configuration (storage created), then --pg-repeats interleaved runs of each."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from mc_pipeline_tests import postgres_server as pgs

    folder = pgs.binaries()
    if folder is None:
        info["postgres_skip"] = pgs.MISSING
        log(f"postgres: skipped: {pgs.MISSING}")
        return
    empty = work / "pg-empty"
    homes = [(f"h{i + 1}", empty / f"h{i + 1}") for i in range(args.fleet_homes)]
    single = empty / "single"
    for _, h in [*homes, ("single", single)]:
        h.mkdir(parents=True)
    log(f"starting PostgreSQL ({folder})")
    server = pgs.PostgresServer(folder).start()
    try:
        info["postgres_server"] = str(folder)
        urls = {
            "fleet": server.create_database("bench_fleet"),
            "single": server.create_database("bench_single"),
        }
        configs = ["fleet_sqlite", "fleet_pg", "single_sqlite", "single_pg"]
        runs: dict[str, list[Timed]] = {k: [] for k in configs}
        profiles: dict[str, list[dict]] = {"fleet_sqlite": [], "fleet_pg": []}
        n = args.pg_repeats
        for i in range(-1, n):  # -1: the first run of each, creating its storage
            order = configs[i % 4 :] + configs[: i % 4]
            for cfg in order:
                shape, storage = cfg.split("_")
                data = work / f"pg-data-{cfg}"
                extra = {"MC_DAGSTER_POSTGRES_URL": urls[shape]} if storage == "pg" else {}
                what = f"fleet of {len(homes)} empty homes" if shape == "fleet" else "one empty home"
                label = f"{what}, {'Postgres' if storage == 'pg' else 'SQLite'} " + (
                    "first run" if i < 0 else f"--force ({i + 1}/{n})"
                )
                if shape == "fleet":
                    t = tools.fleet(label, homes, data, None, "--force", extra=extra)
                else:
                    t = tools.run(label, single, data, "--force", extra=extra)
                raw.append(t)
                if i < 0:
                    m[f"pg_{cfg}_first"] = t
                else:
                    runs[cfg].append(t)
                    # where the fleet's time goes, from its event log (read outside the timing)
                    if shape == "fleet":
                        profiles[cfg].append(step_profile(tools.steps(data / "dagster_home", extra), t))
        for cfg in configs:
            m[f"pg_{cfg}"] = median_of(runs[cfg], f"{cfg} (median)")
        info["postgres_profiles"] = profiles
        info["postgres_walls"] = {cfg: [round(t.wall_s, 2) for t in runs[cfg]] for cfg in configs}
        for cfg in profiles:
            k = closest_to_median(runs[cfg])
            if k is not None and profiles[cfg][k]:
                info[f"postgres_profile_{cfg}"] = {"repeat": k + 1, **profiles[cfg][k]}
    finally:
        server.stop()


def build_extra_cases(m: dict[str, Timed | None], info: dict, only: set[str], args) -> list[Case]:
    cases = []
    if "fleet" in only:
        n, conc = args.fleet_repeats, args.fleet_concurrent
        c = Case(
            "fleet",
            f"fleet of {args.fleet_homes} x {size_label(args.fleet_mb)} homes (upgraded layout), "
            f"MC_MAX_CONCURRENT={conc} (median of {n})",
        )
        par, seq, one = m.get("fleet_parallel"), m.get("fleet_sequential"), m.get("fleet_one")
        c.failed = (
            info.get("fleet_run_error")
            or info.get("fleet_error")
            or why_failed(("fleet run", par), ("single runs", seq), ("fleet run MC_MAX_CONCURRENT=1", one))
        )

        def mem(t: Timed) -> str:
            tree = f", process tree {t.tree_peak_mib:,.0f} MiB" if t.tree_peak_mib is not None else ""
            return f"peak {t.peak_mib:,.0f} MiB{tree}"

        if par:
            c.measured = f"one fleet run: wall {s(par)} (CPU {par.cpu_s:.1f} s; {mem(par)})"
        refs = []
        if seq:
            refs.append(
                f"{args.fleet_homes} single runs one after another: wall {s(seq)} summed "
                f"(CPU {seq.cpu_s:.1f} s; {mem(seq)})"
            )
        if one:
            refs.append(f"fleet run, MC_MAX_CONCURRENT=1: wall {s(one)} (CPU {one.cpu_s:.1f} s; {mem(one)})")
        c.reference = "; ".join(refs) or "-"
        if not c.failed:
            c.ratios = [
                ("vs sequential", par.wall_s / seq.wall_s, 0.65),
                ("vs MC_MAX_CONCURRENT=1", par.wall_s / one.wall_s, None),
            ]
        cases.append(c)
    if "postgres" in only:
        n = args.pg_repeats
        skip = info.get("postgres_skip")
        for shape, key, name in (
            ("fleet", "postgres_fleet", f"Postgres fixed cost, fleet of {args.fleet_homes} empty homes"),
            ("single", "postgres_single", "Postgres fixed cost, one empty home"),
        ):
            c = Case(key, f"{name} (median of {n}, --force)")
            pg, lite = m.get(f"pg_{shape}_pg"), m.get(f"pg_{shape}_sqlite")
            pg1, lite1 = m.get(f"pg_{shape}_pg_first"), m.get(f"pg_{shape}_sqlite_first")
            c.failed = (
                f"skipped: {skip}"
                if skip
                else info.get("postgres_error") or why_failed(("Postgres", pg), ("SQLite", lite))
            )
            if pg:
                c.measured = f"Postgres: wall {s(pg)}" + (f" (first run {s(pg1)})" if pg1 else "")
            if lite:
                c.reference = f"SQLite: wall {s(lite)}" + (f" (first run {s(lite1)})" if lite1 else "")
            if not c.failed:
                c.ratios = [("fixed cost", pg.wall_s / lite.wall_s, 1.5 if shape == "fleet" else None)]
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
    p.add_argument(
        "--big-days",
        type=int,
        help=f"days of history of the big home (default {HISTORY_DAYS} x big/small: "
        f"the same calls per day as the small home's {HISTORY_DAYS} days)",
    )
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
    p.add_argument(
        "--only",
        default=os.environ.get("MC_BENCH_ONLY", ""),
        help=f"comma-separated groups of cases to run: {', '.join(GROUPS)} (default all; env MC_BENCH_ONLY)",
    )
    p.add_argument(
        "--fleet-mb",
        type=float,
        default=env_float("MC_BENCH_FLEET_MB", default=300),
        help="size of each home of the fleet case, MB (default 300; env MC_BENCH_FLEET_MB)",
    )
    p.add_argument(
        "--fleet-homes",
        type=int,
        default=4,
        help="homes in the fleet case, and empty homes in the Postgres fleet (default 4)",
    )
    p.add_argument(
        "--fleet-seed", type=int, default=101, help="seed of the first fleet home (+1 for each next)"
    )
    p.add_argument(
        "--fleet-concurrent", type=int, default=2, help="MC_MAX_CONCURRENT of the fleet run (default 2)"
    )
    p.add_argument(
        "--fleet-repeats",
        type=int,
        default=5,
        help="repeats of the fleet case's three measurements (median; default 5)",
    )
    p.add_argument(
        "--pg-repeats",
        type=int,
        default=5,
        help="--force runs of each Postgres/SQLite configuration after its first run (median; default 5)",
    )
    args = p.parse_args(argv)
    only = {g.strip() for g in args.only.split(",") if g.strip()} or set(GROUPS)
    if only - set(GROUPS):
        p.error(
            f"--only: unknown group(s) {', '.join(sorted(only - set(GROUPS)))} "
            f"(choose from {', '.join(GROUPS)})"
        )

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
    log(
        f"code: {CODE} (HEAD {code_start.get('head', '?')}, "
        f"{len(code_start.get('uncommitted', []))} uncommitted "
        f"file(s) of mc_pipeline/ and synth_home.py, digest {code_start['digest']})"
    )

    small = CachedHome(homes, args.small_mb, args.seed, HISTORY_DAYS) if "core" in only else None
    big = None if args.skip_big or not small else CachedHome(homes, args.big_mb, args.seed, big_days)
    fleet = (
        [
            CachedHome(homes, args.fleet_mb, args.fleet_seed + i, None, layout="upgraded")
            for i in range(args.fleet_homes)
        ]
        if "fleet" in only
        else []
    )
    for h in (small, big, *fleet):
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
        if small:  # --only core
            # 1-2. the floor: imports, the empty home
            imports = [
                timed(
                    f"import dagster, polars, pandera ({i + 1}/{args.repeats})",
                    [args.python, "-c", "import dagster, polars, pandera"],
                    clean_env(),
                )
                for i in range(args.repeats)
            ]
            raw += imports
            m["imports"] = median_of(imports, "import (median)")
            empty_home, empty_data = work / "empty-home", work / "data-empty"
            empty_home.mkdir()
            keep("empty_first", tools.run("empty home, first run", empty_home, empty_data))
            empties = [
                tools.run(f"empty home --force ({i + 1}/{args.repeats})", empty_home, empty_data, "--force")
                for i in range(args.repeats)
            ]
            raw += empties
            m["empty"] = median_of(empties, "empty home (median)")

            # 3. the small home
            data = work / "data-small"
            log(f"warming the page cache: {small.home}")
            warm(small.home)
            keep("full_small", tools.run(f"full build {small_label}", small.home, data))
            cc, cc_json = tools.cc(f"ccusage {small_label}", small.home)
            keep("cc_full_small", cc)
            totals["full_small"] = {
                "mc_pipeline": tools.probe(data),
                "ccusage": (cc_json or {}).get("totals"),
            }
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
                totals["full_big"] = {
                    "mc_pipeline": tools.probe(data),
                    "ccusage": (cc_json or {}).get("totals"),
                }

                def add_big() -> None:
                    add_sessions(args.python, big.home, add_mb, args.add_seed)
                    keep("add_big", tools.run(f"+{args.add_pct:g}% sessions on {big_label}", big.home, data))

                guarded("add_big", add_big)

        # 5. the fleet
        if fleet:
            guarded("fleet_run", lambda: run_fleet(args, tools, work, fleet, m, raw, info))

        # 6. the Postgres fixed cost
        if "postgres" in only:
            guarded("postgres", lambda: run_postgres(args, tools, work, m, raw, info))
    finally:
        for h in (small, big, *fleet):
            if h:
                h.restore()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    code_end = code_state()

    cases = build_cases(m, info, small_label, big_label) if small else []
    cases += build_extra_cases(m, info, only, args)
    out = []
    mem = mem_total_gib()
    out.append(
        f"machine: {os.cpu_count()} cores{f', {mem:.0f} GiB' if mem else ''}; load average (1/5/15 min) "
        f"{'/'.join(f'{x:.2f}' for x in load_start)} at start, "
        f"{'/'.join(f'{x:.2f}' for x in load_end)} at end"
    )
    uncommitted = code_start.get("uncommitted", [])
    out.append(
        f"code: HEAD {code_start.get('head', '?')}"
        + (f" + uncommitted {', '.join(uncommitted)}" if uncommitted else "")
        + (f"; run from a copy made at the start ({CODE})" if CODE != ROOT else "; run in place")
    )
    if code_end["digest"] != code_start["digest"]:
        out.append(
            f"note: mc_pipeline/ was edited while the bench ran (HEAD {code_end.get('head', '?')} at the end)"
            + (
                "; the copy kept every measurement on the starting code"
                if CODE != ROOT
                else ": the measurements may mix versions"
            )
        )
    for label, h in ((small_label, small), (big_label, big)):
        if h:
            b, n = home_bytes(h.home)
            out.append(
                f"home {label}: {h.home} ({b / 1e6:,.0f} MB in {n:,} transcript files, "
                f"{h.days} days, seed {h.seed})"
            )
    for i, h in enumerate(fleet):
        on_disk = sum(size for size, _ in home_files(h.home).values())
        calls = (h.stats.get("truth") or {}).get("calls")
        out.append(
            f"fleet home h{i + 1}: {h.home} ({on_disk / 1e6:,.0f} MB on disk, {h.layout} layout, "
            f"seed {h.seed}, {h.stats.get('days', '?')} days, {f'{calls:,}' if calls else '?'} calls)"
        )
    if "added" in info:
        out.append(
            f"new sessions: {info['added'].get('bytes', 0) / 1e6:,.1f} MB "
            f"in {info['added'].get('files')} files (--add-mb {add_mb:g} --add-seed {args.add_seed})"
            + (", the same in both homes" if big else "")
        )
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
            out.append(f"{c.key}: {c.result} - {c.failed}")
        if c.note:
            out.append(f"{c.key}: measured as {c.note}")
    for key, label in (("full_small", small_label), ("full_big", big_label)):
        tot = totals.get(key)
        if not tot:
            continue
        ours, theirs = tot["mc_pipeline"].get("transcript"), tot["ccusage"]
        line = f"recorded cost, full build {label}: "
        line += (
            f"mc_pipeline ${ours['recorded_cost']:,.2f} ({ours['calls']:,} calls, {ours['tokens']:,} tokens)"
            if ours
            else "mc_pipeline -"
        )
        line += (
            f"; ccusage ${theirs['totalCost']:,.2f} ({theirs['totalTokens']:,} tokens)"
            if theirs
            else "; ccusage -"
        )
        if ours and theirs:
            line += f"; difference ${ours['recorded_cost'] - theirs['totalCost']:+,.2f}"
        out.append(line)

    def tot(t: tuple[int, float] | None) -> str:
        return f"{t[0]:,} calls / ${t[1]:,.6f}" if t else "unreadable"

    for chk in info.get("fleet_totals", []):
        each = " + ".join(f"{t[0]:,} / ${t[1]:,.2f}" if t else "?" for t in chk.get("each") or [])
        out.append(
            f"fleet totals, repeat {chk['repeat']}: single runs {each} = {tot(chk['singles'])}; fleet "
            f"MC_MAX_CONCURRENT={args.fleet_concurrent} {tot(chk['parallel'])}; MC_MAX_CONCURRENT=1 "
            f"{tot(chk['one'])} -> {'EQUAL' if chk['equal'] else 'DIFFERENT'}"
        )
    walls = info.get("fleet_walls")
    if walls:
        out.append(
            f"fleet walls per repeat (s): one fleet run {walls['parallel']}; single runs summed "
            f"{walls['sequential']}; MC_MAX_CONCURRENT=1 {walls['one']}"
        )
    walls = info.get("postgres_walls")
    if walls:
        out.append("empty homes, walls per repeat (s): " + "; ".join(f"{k} {v}" for k, v in walls.items()))
    for kind, label in (
        ("parallel", f"MC_MAX_CONCURRENT={args.fleet_concurrent}"),
        ("one", "MC_MAX_CONCURRENT=1"),
    ):
        prof = info.get(f"fleet_profile_{kind}")
        if prof:
            out.append(
                f"fleet run {label} (repeat {prof['repeat']}, the median one), from its event log: "
                + profile_text(prof)
            )
    for cfg, label in (("fleet_sqlite", "SQLite"), ("fleet_pg", "Postgres")):
        prof = info.get(f"postgres_profile_{cfg}")
        if prof:
            out.append(
                f"empty fleet run on {label} (repeat {prof['repeat']}, the median one), from its event log: "
                + profile_text(prof)
            )
    prof = info.get("fleet_profile_parallel")
    if prof:
        out += [
            "",
            f"Steps of that fleet run (MC_MAX_CONCURRENT={args.fleet_concurrent}), seconds after launch:",
            "",
            "| step | queued | started | ended | in step s |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        out += [
            f"| {r['step']} | {r['queued']:.2f} | {r['start']:.2f} | {r['end']:.2f} "
            f"| {r['end'] - r['start']:.2f} |"
            for r in prof["steps"]
        ]
    out += [
        "",
        "All measurements (each a fresh process):",
        "",
        "| step | wall s | CPU s | peak RSS MiB | exit | mc_pipeline said |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
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
            "machine": {
                "cores": os.cpu_count(),
                "mem_gib": mem,
                "loadavg_start": load_start,
                "loadavg_end": load_end,
            },
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
            | {"big_days": big_days},
            "ccusage": ccusage,
            "code": {"start": code_start, "end": code_end, "snapshot": str(CODE) if CODE != ROOT else None},
            "homes": {
                lbl: {
                    "path": str(h.home),
                    "days": h.days,
                    "seed": h.seed,
                    "layout": h.layout,
                    "stats": h.stats,
                }
                for lbl, h in (
                    (small_label, small),
                    (big_label, big),
                    *((f"fleet h{i + 1}", h) for i, h in enumerate(fleet)),
                )
                if h
            },
            "cases": [c.as_json() for c in cases],
            "measurements": [t.brief() for t in raw],
            "medians": {
                k: m[k].brief()
                for k in (
                    "imports",
                    "empty",
                    "fleet_parallel",
                    "fleet_sequential",
                    "fleet_one",
                    *(f"pg_{c}" for c in ("fleet_pg", "fleet_sqlite", "single_pg", "single_sqlite")),
                )
                if m.get(k)
            },
            "totals": {
                k: {
                    "mc_pipeline": {kk: vv for kk, vv in v["mc_pipeline"].items() if kk != "days"},
                    "ccusage": v["ccusage"],
                }
                for k, v in totals.items()
            },
            "info": info,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        log(f"results written to {args.json}")
    return 0 if all(c.result in ("MET", "INFO") for c in cases if c.result != "SKIPPED") else 1


if __name__ == "__main__":
    sys.exit(main())
