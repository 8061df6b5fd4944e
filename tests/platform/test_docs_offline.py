"""`/docs` works in a closed network: Swagger UI's files come from the service, not a CDN.

A headless Chromium (Debian's `chromium`, installed by `make test`) loads the page with every
host name but loopback unresolvable, so a page that needs a CDN renders nothing. The control
test proves the check can fail: FastAPI's stock docs page (CDN assets) shows no operation.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from mandate_vault_harness.net import free_port, wait_for_port
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_harness.telemetry import telemetry_for

# One rendered operation of Swagger UI: <div class="opblock opblock-post ...">
_OPERATION = re.compile(r'class="opblock opblock-(get|post|put|patch|delete)\b')
_ASSET = re.compile(r'(?:src|href)="([^"]+)"')


def _chromium() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's chromium is missing: `make test` (scripts/bootstrap.sh) installs it"
    return path


def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts ran, with only loopback reachable."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        result = subprocess.run(
            [
                _chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                # no name resolves but loopback: a CDN asset cannot load, whatever the network
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=30000", "--dump-dom", url,
            ],
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def docs_asset_urls(html: str) -> list[str]:
    return _ASSET.findall(html)


def test_swagger_ui_renders_the_operations_offline() -> None:
    verifier = ServiceProcess("jwt-verifier").start()
    try:
        html = httpx.get(f"{verifier.url}/docs").text
        assert all(url.startswith("/docs/assets/") for url in docs_asset_urls(html)), html
        dom = rendered_dom(f"{verifier.url}/docs")
    finally:
        verifier.stop()
    assert _OPERATION.search(dom), dom[-3000:]
    assert "/api/v1/verify" in dom


@contextmanager
def _serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_control_a_cdn_docs_page_renders_nothing_here() -> None:
    stock = FastAPI(title="stock FastAPI docs (assets from a CDN)")
    stock.get("/things")(lambda: {})
    with _serve(stock) as url:
        dom = rendered_dom(f"{url}/docs")
    assert "swagger-ui-bundle.js" in dom
    assert not _OPERATION.search(dom)


def _service_apps() -> dict[str, Callable[[], FastAPI]]:
    from mandate_vault_api.main import create_app as api
    from mandate_vault_api.settings import ApiSettings
    from mandate_vault_verifier.main import create_app as verifier
    from mandate_vault_verifier.settings import VerifierSettings
    from mandate_vault_worker.main import create_app as worker
    from mandate_vault_worker.settings import WorkerSettings

    return {
        "api": lambda: api(ApiSettings(), telemetry_for("api")),
        "jwt-verifier": lambda: verifier(VerifierSettings(), telemetry_for("jwt-verifier")),
        "webhook-worker": lambda: worker(WorkerSettings(), telemetry_for("webhook-worker")),
    }


@pytest.mark.parametrize("service", ["api", "jwt-verifier", "webhook-worker"])
async def test_every_service_serves_its_docs_assets(service: str) -> None:
    app = _service_apps()[service]()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        for page in ("/docs", "/redoc"):
            html = (await client.get(page)).text
            assets = docs_asset_urls(html)
            assert assets, html
            for asset in assets:
                assert asset.startswith("/docs/assets/"), f"{page} loads {asset}"
                response = await client.get(asset)
                assert response.status_code == 200, asset
                assert len(response.content) > 0
