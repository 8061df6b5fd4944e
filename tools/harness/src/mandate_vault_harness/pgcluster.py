"""A throwaway PostgreSQL cluster of our own, so a scenario can stop and start "the database"
without touching the machine's server that other tests and people use.

`initdb` with the Debian binaries (/usr/lib/postgresql/<version>/bin) into a temporary
directory, as the `postgres` user when running as root (initdb refuses root), listening on a
free loopback port with trust authentication; `stop()`/`start()` are `pg_ctl stop -m fast` and
`pg_ctl start`; `destroy()` removes everything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from mandate_vault_harness.net import free_port

DEBIAN_ROOT = Path("/usr/lib/postgresql")


def binaries() -> Path:
    """The newest installed PostgreSQL's bin directory."""
    found = sorted(
        (p for p in DEBIAN_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        msg = f"no PostgreSQL binaries under {DEBIAN_ROOT} (apt-get install postgresql)"
        raise RuntimeError(msg)
    return found[-1]


class ThrowawayCluster:
    def __init__(self) -> None:
        self.bin = binaries()
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="mv-reliability-pg-"))
        self.data = self.directory / "data"
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        argv = [str(self.bin / command[0]), *command[1:]]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, cwd=self.directory)

    def create(self) -> ThrowawayCluster:
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.start()
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ThrowawayCluster:
        try:
            return self.create()
        except BaseException:
            self.destroy()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()
