"""The README's path from zero to a signed webhook works as pasted, so it cannot drift.

The test does what a newcomer does: `make run` (the README's own line) in one terminal, then
the README's shell blocks of "From zero to a signed webhook", in order, in a second and a third
terminal. Each terminal is a fresh bash with only the system's PATH (nothing under $HOME, no
virtualenv), so a command that needs something the set-up did not put where a shell finds it
fails here. Two departures from pasting, both what a reader does or what side-by-side tests
need: the placeholders are filled in from what the earlier commands printed (the admin
password, the whsec_ secret), and the README's default ports are swapped for free ones (the
stack and the make targets read them from API_PORT etc.; the state and database go to a
temporary directory).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from mandate_vault_harness.net import free_port

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SECTION = "### From zero to a signed webhook"
PASSWORD_PLACEHOLDER = "'<the printed password>'"
SECRET_PLACEHOLDER = "'whsec_...'"


def readme_blocks(heading: str) -> list[str]:
    """The ```bash blocks of the section that starts with `heading`, in order."""
    text = (ROOT / "README.md").read_text()
    start = text.index(heading)
    end = text.find("\n## ", start)
    return re.findall(r"```bash\n(.*?)```", text[start:end], flags=re.DOTALL)


class Terminal:
    """A bash fed one chunk at a time, as a person types; output read up to a marker."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, cwd=ROOT, text=True, start_new_session=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def type(self, commands: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(commands + "\n")
        self.process.stdin.flush()

    def run(self, commands: str, timeout: float = 120) -> str:
        """Type `commands`; return their output; fail if the last one failed."""
        # on a line of its own even after output without a final newline (curl's)
        self.type(f"{commands}\nprintf '\\n__done__ %s\\n' $?")
        output = self.read_until(r"^__done__ \d+$", timeout)
        *printed, done = output.splitlines()
        assert done == "__done__ 0", f"{commands}\n---\n{output}"
        return "\n".join(printed).strip()

    def read_until(self, pattern: str, timeout: float) -> str:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while not (seen and re.search(pattern, seen[-1].rstrip("\n"))):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = f"no {pattern!r} within {timeout}s:\n{''.join(seen)}"
                raise TimeoutError(msg)
            try:
                seen.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                continue
        return "".join(seen)

    def interrupt(self, timeout: float = 30) -> None:
        """Ctrl-C to everything started here, then make sure it is gone."""
        for sig in (signal.SIGINT, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture
def ports() -> dict[str, int]:
    names = ("API_PORT", "VERIFIER_PORT", "WORKER_PORT", "MV_BROKER_PORT", "RECEIVER_PORT")
    return {name: free_port() for name in names}


@pytest.fixture
def fresh_env(ports: dict[str, int], tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": os.environ["HOME"],
        "PATH": SYSTEM_PATH,
        "LANG": "C.UTF-8",
        "MV_STATE_DIR": str(tmp_path / "var"),
        "API_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/var/mandate_vault.db",
        **{name: str(port) for name, port in ports.items()},
    }


@pytest.fixture
def stack(fresh_env: dict[str, str], ports: dict[str, int]) -> Iterator[Terminal]:
    """The README's `make run`, in its own terminal, until every service is ready."""
    (make_run,) = [
        line.split("#")[0].strip()
        for line in readme_blocks("## Two commands")[0].splitlines()
        if line.startswith("make run")
    ]
    terminal = Terminal(fresh_env)
    terminal.type(make_run)
    try:
        terminal.read_until(r"Mandate Vault is running", timeout=180)
        for name in ("API_PORT", "VERIFIER_PORT", "WORKER_PORT"):
            wait_ready(f"http://127.0.0.1:{ports[name]}")
        yield terminal
    finally:
        terminal.interrupt()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{ports['API_PORT']}/healthz")


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, f"{url} not ready after {timeout}s"
        time.sleep(0.2)


def on_free_ports(block: str, ports: dict[str, int]) -> str:
    swaps = {
        "localhost:8000": f"localhost:{ports['API_PORT']}",
        "127.0.0.1:9000": f"127.0.0.1:{ports['RECEIVER_PORT']}",
    }
    for default, free in swaps.items():
        block = block.replace(default, free)
    return block


def steps(block: str) -> list[str]:
    """A block's steps: the chunks a reader runs one after the other (blank-line separated)."""
    return [chunk for chunk in block.split("\n\n") if chunk.strip()]


@pytest.mark.slow
def test_zero_to_signed_webhook_as_pasted(
    stack: Terminal, fresh_env: dict[str, str], ports: dict[str, int]
) -> None:
    second_block, receiver_block, submit_block = readme_blocks(SECTION)
    assert "localhost:8000" in second_block
    assert "127.0.0.1:9000" in second_block
    second = Terminal(fresh_env)
    receiver = Terminal(fresh_env)
    try:
        found: dict[str, str] = {}
        for step in steps(on_free_ports(second_block, ports)):
            output = second.run(step.replace(PASSWORD_PLACEHOLDER, f"'{found.get('password')}'"))
            if match := re.search(r"admin password \(shown once\): (\S+)", output):
                found["password"] = match[1]
            if match := re.search(r'"secret":"(whsec_[^"]+)"', output):
                found["secret"] = match[1]
        assert found.keys() == {"password", "secret"}, found

        assert SECRET_PLACEHOLDER in receiver_block
        receiver.type(receiver_block.replace(SECRET_PLACEHOLDER, f"'{found['secret']}'"))
        receiver.read_until(rf"listening on http://127.0.0.1:{ports['RECEIVER_PORT']}", 60)

        printed = second.run(submit_block)
        submitted = json.loads(printed[printed.index("{") :])
        delivery = receiver.read_until(r"signature valid|SIGNATURE INVALID", timeout=60)
        assert f"MandateCreated mandate={submitted['id']}" in delivery
        assert delivery.rstrip().endswith("-> signature valid"), delivery
    finally:
        second.interrupt()
        receiver.interrupt()
