"""Real servers for tests: a private PostgreSQL cluster and helpers to run the bridge's processes.

PostgreSQL runs from the distribution's binaries (initdb/pg_ctl), as the `postgres` user when
the tests run as root (initdb refuses root), with fsync off: durability is not under test.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_pg_bin() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    run_as: str | None

    @classmethod
    def start(cls) -> PostgresServer:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found")
        root = Path(tempfile.mkdtemp(prefix="fb-pg-"))
        run_as = "postgres" if os.geteuid() == 0 else None
        if run_as:
            entry = pwd.getpwnam(run_as)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        server = cls(bin_dir, root, free_port(), run_as)
        server._run([str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                     "--auth=trust", "-E", "UTF8", "--no-sync"])
        options = (f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        server._run([str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-o", options, "-w",
                     "-l", str(root / "postgres.log"), "start"])
        return server

    def _run(self, argv: list[str]) -> None:
        kwargs = {"user": self.run_as} if self.run_as else {}
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       cwd=self.root, **kwargs)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def wait_http(url: str, timeout: float = 60.0, status: int = 200) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == status:
                return
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready: {last}")
