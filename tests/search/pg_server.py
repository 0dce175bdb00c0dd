"""A throwaway PostgreSQL server on loopback, from Debian's binaries (used by the tests' fixture
and by studies/distributed/throughput.py).

initdb into a fresh temporary folder, `pg_ctl start` on a free port with
`listen_addresses=127.0.0.1` and the socket in that folder, password (scram) authentication over
TCP, trust over the socket for the set-up. initdb refuses to run as root: as root the server runs
as the `postgres` OS user (created by Debian's package).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

USER, PASSWORD, DB = "dse", "dse-secret", "dse"


class ServerError(RuntimeError):
    pass


def pg_bindir() -> Optional[Path]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).resolve().parent if which else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    host: str
    port: int
    user: str = USER
    password: str = PASSWORD
    db: str = DB
    ctl: Optional[Callable[[str], None]] = field(default=None, repr=False)  # "stop" / "start" (pg_ctl)

    def stop(self) -> None:
        """Stop the server now (`pg_ctl stop -m fast`: connections are cut), data kept."""
        self.ctl("stop")

    def start(self) -> None:
        self.ctl("start")

    def url(self, user: Optional[str] = None, password: Optional[str] = None, db: Optional[str] = None,
            port: Optional[int] = None) -> str:
        return (f"postgresql://{user or self.user}:{password or self.password}@{self.host}:{port or self.port}/"
                f"{db or self.db}")


@contextlib.contextmanager
def throwaway_server(bindir: Path) -> Iterator[PgServer]:
    """A running server with user `dse` (password `dse-secret`) owning database `dse`; removed after."""
    as_root = os.geteuid() == 0
    if as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise ServerError("running as root and there is no `postgres` OS user to run the server as") from None
    base = Path(tempfile.mkdtemp(prefix="sidse-pg-"))  # pytest's own tmp folders are root-only (0700)
    data, sock, pwfile = base / "data", base / "sock", base / "pw"
    sock.mkdir()
    pwfile.write_text("admin-secret\n")
    if as_root:
        for p in (base, sock, pwfile):
            os.chown(p, owner.pw_uid, owner.pw_gid)

    def run(*cmd: str) -> subprocess.CompletedProcess:
        full = ["runuser", "-u", "postgres", "--", *cmd] if as_root else list(cmd)
        return subprocess.run(full, capture_output=True, text=True, timeout=120)

    started = False
    try:
        res = run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile),
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        if res.returncode:
            raise ServerError(f"initdb failed: {(res.stderr or res.stdout).strip()[-2000:]}")
        port = free_port()
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c max_connections=100"
        res = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60", "-o", opts, "start")
        if res.returncode:
            log = (base / "log").read_text()[-2000:] if (base / "log").exists() else ""
            raise ServerError(f"pg_ctl start failed: {(res.stderr or res.stdout).strip()} {log}")
        started = True
        import psycopg

        with psycopg.connect(host=str(sock), port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
            conn.execute(f"CREATE DATABASE {DB} OWNER {USER}")

        def ctl(action: str) -> None:
            if action == "stop":
                res = run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
            else:
                res = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60", "-o",
                          opts, "start")
            if res.returncode:
                raise ServerError(f"pg_ctl {action} failed: {(res.stderr or res.stdout).strip()[-500:]}")

        yield PgServer("127.0.0.1", port, ctl=ctl)
    finally:
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
            time.sleep(0.2)
        shutil.rmtree(base, ignore_errors=True)
