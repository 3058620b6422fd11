"""A real PostgreSQL server for tests, started in a temporary folder with Debian's binaries.

``PostgresServer.start()`` runs ``initdb`` (password authentication, a random password) and ``pg_ctl start``
on a free port of 127.0.0.1, as the ``postgres`` user when the tests run as root (PostgreSQL refuses to
run as root). ``binaries()`` finds ``initdb``/``pg_ctl`` on PATH or in ``/usr/lib/postgresql/<version>/bin``;
tests skip, saying so, when there are none (``.ci/run`` installs Debian's ``postgresql`` as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

MISSING = "PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql (.ci/run does as root)"


def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (the newest Debian version first), or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    for folder in sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version(p.parent.name), reverse=True
    ):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _version(name: str) -> float:
    try:
        return float(name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    bin: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mc-postgres-")))
    port: int = field(default_factory=_free_port)
    user: str = "mc"
    password: str = field(default_factory=lambda: "pw" + uuid.uuid4().hex)  # found nowhere it must not be

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self.root, pg.pw_uid, pg.pw_gid)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.root / "data"),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr[-2000:]}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        try:
            self._run(
                "pg_ctl",
                "-D",
                str(self.root / "data"),
                "-o",
                opts,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            )
        except subprocess.CalledProcessError as exc:
            log = (
                (self.root / "server.log").read_text()[-2000:] if (self.root / "server.log").exists() else ""
            )
            raise RuntimeError(f"pg_ctl start failed: {exc.stderr[-1000:]} {log}") from exc
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new database; returns its URL."""
        import psycopg2

        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop", check=False, timeout=60)
        for _ in range(50):
            if not (self.root / "data" / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)
