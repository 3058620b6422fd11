"""Two runs at once cannot corrupt anything, and a reader never sees half a file.

- ``mc_pipeline.tables.storage`` writes to a temporary name and ``os.replace``s it: reader threads hammer a
  JSON, a Parquet and a CSV file while writer threads rewrite them with versions of very different
  sizes; every read must be one whole version (each version carries its own checksum).
- Two ``python -m mc_pipeline run`` processes on the same home, data folder and Dagster instance (a
  scheduled run and a manual rerun) both succeed while a reader polls the outputs, and leave the same
  ``llm_calls`` as a single run.
The run-queue limit for runs tagged ``mc_pipeline/refresh`` is asserted in test_definitions.py and
exercised through the real daemon in test_webserver.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from mc_pipeline.tables import storage
from mc_pipeline.tables.store import Tables
from mc_pipeline_tests import homes as h

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = 30


def rows_of(version: int) -> int:
    return 5 if version % 2 else 60_000  # small and large versions alternate: a torn read cannot hide


def json_doc(version: int) -> dict:
    rows = [
        {"day": f"2026-03-{1 + i % 28:02d}", "cost": i * 0.01, "v": version}
        for i in range(rows_of(version) // 20)
    ]
    body = json.dumps(rows, sort_keys=True)
    return {"version": version, "rows": rows, "sha": hashlib.sha256(body.encode()).hexdigest()}


def check_json(blob: bytes) -> int:
    doc = json.loads(blob)
    body = json.dumps(doc["rows"], sort_keys=True)
    assert hashlib.sha256(body.encode()).hexdigest() == doc["sha"], "rows do not match their checksum"
    return doc["version"]


def frame(version: int) -> pl.DataFrame:
    n = rows_of(version)
    return pl.DataFrame(
        {"v": [version] * n, "i": range(n), "text": [f"row {i} of version {version}" for i in range(n)]}
    )


def check_frame(df: pl.DataFrame) -> int:
    versions = df.get_column("v").unique().to_list()
    assert len(versions) == 1, f"rows of several versions: {versions[:5]}"
    assert df.height == rows_of(versions[0]) and df.get_column("i").to_list() == list(range(df.height))
    return versions[0]


def hammer(readers: dict, writers: list) -> tuple[dict[str, set], list[str]]:
    """Run writer callables to completion while each reader runs in a loop; (versions seen, errors)."""
    done = threading.Event()
    seen: dict[str, set] = {name: set() for name in readers}
    errors: list[str] = []

    def read_loop(name, fn):
        while not done.is_set():
            try:
                seen[name].add(fn())
            except BaseException as exc:  # noqa: BLE001 - every failure is evidence (Polars panics are BaseException)
                errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")

    threads = [threading.Thread(target=read_loop, args=item, daemon=True) for item in readers.items()]
    for t in threads:
        t.start()
    write_threads = [threading.Thread(target=w) for w in writers]
    for t in write_threads:
        t.start()
    for t in write_threads:
        t.join()
    done.set()
    for t in threads:
        t.join(timeout=30)
    return seen, errors


def test_readers_never_see_half_a_file_while_two_writers_rewrite(tmp_path):
    usage, table, csv = tmp_path / "usage-data.json", tmp_path / "t" / "t.parquet", tmp_path / "csv" / "t.csv"
    storage.write_json(json_doc(0), usage)
    storage.write_parquet(frame(0), table)
    storage.write_csv(frame(0), csv)

    def writer(offset):
        def run():
            for k in range(1 + offset, VERSIONS + 1, 2):
                storage.write_json(json_doc(k), usage)
                storage.write_parquet(frame(k), table)
                storage.write_csv(frame(k), csv)

        return run

    readers = {
        "json": lambda: check_json(usage.read_bytes()),
        "parquet": lambda: check_frame(storage.read_parquet(table)),
        "csv": lambda: check_frame(pl.read_csv(csv)),
    }
    seen, errors = hammer(readers, [writer(0), writer(1)])
    assert not errors, errors[:10]
    for name, versions in seen.items():
        assert versions and versions <= set(range(VERSIONS + 1)), name
    assert check_json(usage.read_bytes()) in (VERSIONS - 1, VERSIONS)
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_the_reader_check_catches_a_half_written_file(tmp_path):
    """What the hammer test looks for is real: a file written in place and read mid-way fails the checks."""
    blob = json.dumps(json_doc(2)).encode()
    with pytest.raises(ValueError):
        check_json(blob[: len(blob) // 2])
    target = tmp_path / "t.parquet"
    frame(2).write_parquet(target)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(pl.exceptions.PolarsError):  # Polars refuses the cut file: no PAR1 footer
        check_frame(pl.read_parquet(target))
    mixed = pl.concat([frame(1), frame(2).head(3)])
    with pytest.raises(AssertionError):
        check_frame(mixed)


def test_day_partitions_rewritten_by_two_writers_stay_whole(tmp_path):
    root = tmp_path / "llm_calls"
    days = [date(2026, 3, 1) + timedelta(days=d) for d in range(6)]
    df = pl.DataFrame({"day": [d for d in days for _ in range(2000)], "n": range(len(days) * 2000)})

    def writer():
        for k in range(8):
            # alternate the content of one day so that writes really happen, same set of days
            bump = df.with_columns(
                n=pl.when(pl.col("day") == days[k % 6]).then(pl.col("n") + k).otherwise("n")
            )
            storage.write_partitioned_by_day(bump, root)

    storage.write_partitioned_by_day(df, root)

    def read():
        got = storage.read_partitioned_by_day(root)
        assert got.height == df.height and got.get_column("day").n_unique() == len(days)
        return got.height

    seen, errors = hammer({"dataset": read}, [writer, writer])
    assert not errors, errors[:10]
    assert seen["dataset"] == {df.height}


# -- two real runs at once ------------------------------------------------------------------------------


def build_home(home: Path) -> int:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    n = 0
    for s in range(4):
        lines = [h.session_line(f"conc-{s}", t)]
        for i in range(25):
            lines += [
                h.user(t),
                h.assistant(t - timedelta(days=s, minutes=i), u=h.usage(100 + i, 10 * s, 300, 5, cost=0.001)),
            ]
            n += 1
        h.write_session(home, lines, session_id=f"conc-{s}")
    if h.REAL_DIR.exists():
        h.copy_real_home(home, agent="real")
    return n


def cli_env(home: Path, data: Path, dagster_home: Path) -> dict:
    return {
        **os.environ,
        "OPENCLAW_HOME": str(home),
        "MC_DATA_DIR": str(data),
        "MC_TIMEZONE": "UTC",
        "DAGSTER_HOME": str(dagster_home),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def start_run(env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mc_pipeline", "run", "--quiet"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def existing_instance(dagster_home: Path) -> Path:
    """The Dagster instance as the daemon or an earlier run leaves it: config written, storages created.

    Two processes creating a fresh instance's SQLite storages at the same instant can race on the schema
    migration ("alembic_version has more than one head"); with the scheduler running, the instance exists
    long before a manual rerun meets a scheduled run, which is the case tested here.
    """
    import dagster as dg

    from mc_pipeline.runtime.instance import dagster_yaml

    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(dagster_yaml(dagster_home))
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.get_runs(limit=1)
        instance.all_instigator_state()
        instance.get_latest_materialization_events([dg.AssetKey("llm_calls")])
    return dagster_home


def test_two_runs_at_once_corrupt_nothing(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    build_home(home)
    env = cli_env(home, data, existing_instance(tmp_path / "dagster_home"))
    io = Tables(data)

    def read_calls():
        return storage.read_partitioned_by_day(io.table_dir("llm_calls")).height

    def read_public():
        out = []
        for name in ("usage-data.json", "sessions.json"):
            if (data / name).exists():
                out.append(len(json.loads((data / name).read_bytes())))
        return tuple(out)

    procs: list[subprocess.Popen] = []

    def both_runs():
        procs.extend([start_run(env, tmp_path), start_run(env, tmp_path)])
        for p in procs:
            p.wait(timeout=600)

    seen, errors = hammer({"llm_calls": read_calls, "public": read_public}, [both_runs])
    outputs = [p.stdout.read() for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n---\n".join(o[-3000:] for o in outputs)
    assert not errors, errors[:10]

    # the result equals one run alone on a fresh folder
    ref_data = tmp_path / "ref"
    ref = subprocess.run(
        [sys.executable, "-m", "mc_pipeline", "run", "--quiet"],
        capture_output=True,
        text=True,
        env=cli_env(home, ref_data, tmp_path / "ref_dagster_home"),
        cwd=tmp_path,
        timeout=600,
    )
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    got = io.load("llm_calls").sort("call_id")
    want = Tables(ref_data).load("llm_calls").sort("call_id")
    assert want.height > 0
    assert got.equals(want)
    # each day file is whole; while the very first run writes its days one by one a reader can see fewer days
    assert max(seen["llm_calls"]) == want.height and all(n <= want.height for n in seen["llm_calls"])
    leftovers = [str(p.relative_to(data)) for p in data.rglob("*.tmp") if "dagster_home" not in p.parts]
    assert not leftovers


def test_two_first_runs_at_once_on_a_brand_new_instance(tmp_path):
    """No instance yet: both runs create it at the same moment (the storages are made once, under a lock)."""
    home = tmp_path / "home"
    build_home(home)
    procs = [
        start_run(cli_env(home, tmp_path / f"data-{i}", tmp_path / "dagster_home"), tmp_path)
        for i in range(2)
    ]
    for p in procs:
        p.wait(timeout=600)
    outputs = [p.stdout.read() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(o[-3000:] for o in outputs)
    assert (tmp_path / "dagster_home" / ".storage-ready").exists()
