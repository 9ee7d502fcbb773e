"""The quick-start notebook in a real JupyterLab, driven by headless Chromium through Playwright.

JupyterLab listens on 127.0.0.1 and points at an emulator through ``DAP_API_URL`` only (no
client id or secret), so the notebook needs its login form. The test fills the form with the
emulator's credentials, clicks *Log in*, runs the rest of the notebook (which runs
``%dap incremental canvas.accounts``), checks what the page shows, takes screenshots, saves the
notebook with the widget state (JupyterLab's ``saveState`` on) and checks the file on disk
holds no secret. Chromium is Debian's (``scripts/test.sh`` installs it); the recipe and its
pitfalls are in the shared environment notes, section 5.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dapframe.emulator import Emulator

from .conftest import CLIENT_ID, CLIENT_SECRET

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("DAPFRAME_TEST_ARTIFACTS", ROOT / ".cache" / "test-artifacts"))
TOKEN = "dapframe-browser-test"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-quic"]
KERNEL_IDLE = ("() => window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel"
               "?.status === 'idle'")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path, Emulator]]:
    """JupyterLab on 127.0.0.1 over a copy of the quick start, and the emulator it points at."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run the tests through scripts/test.sh, "
                    "which installs it (apt-get install -y chromium)")
    root = tmp_path / "work"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / "quickstart.ipynb", root)
    jupyter = tmp_path / "jupyter"
    # Save the widget state in the notebook, so that the no-secret check covers it too.
    settings = jupyter / "settings" / "@jupyter-widgets" / "jupyterlab-manager"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"saveState": True}))
    # Render every cell (no windowing), so that outputs can be scrolled to and screenshot.
    tracker = jupyter / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    news = jupyter / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port = _free_port()
    with Emulator(seed=0, scale=1, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  job_seconds=0.05) as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAP_")}
        env.update({
            "DAP_API_URL": emu.base_url,  # no id or secret: the form is needed
            "DAPFRAME_CACHE_DIR": str(tmp_path / "cache"),
            "HOME": str(tmp_path / "home"),
            "MPLCONFIGDIR": str(tmp_path / "mpl"),
            "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
            "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
            "JUPYTER_DATA_DIR": str(jupyter / "data"),
            "JUPYTERLAB_SETTINGS_DIR": str(jupyter / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(jupyter / "workspaces"),
        })
        log = (tmp_path / "lab.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
             f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/api/status?token={TOKEN}", timeout=2).status_code \
                            == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start: "
                                + (tmp_path / "lab.log").read_text()[-2000:])
                time.sleep(0.2)
            yield base, root, emu
        finally:
            proc.send_signal(signal.SIGTERM)  # the lab shuts its kernels down too
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _cell_index(notebook: Path, source: str) -> int:
    cells = json.loads(notebook.read_text())["cells"]
    return next(i for i, c in enumerate(cells) if "".join(c["source"]).strip() == source)


def test_quickstart_in_jupyterlab(lab: tuple[str, Path, Emulator]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, root, emu = lab
    notebook = root / "quickstart.ipynb"
    login_cell = _cell_index(notebook, "%dap login")
    incremental_cell = _cell_index(notebook, "%dap incremental canvas.accounts")
    shots = ARTIFACTS / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    before = notebook.stat().st_mtime_ns

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/quickstart.ipynb?token={TOKEN}")
            page.wait_for_selector(".jp-Cell .cm-content", timeout=60_000)
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)

            def run(command: str, active: int) -> None:
                page.evaluate(
                    "([command, active]) => { const nb = window.jupyterapp.shell.currentWidget;"
                    " nb.content.activeCellIndex = active;"
                    " return window.jupyterapp.commands.execute(command); }",
                    [command, active])

            # Everything up to the login form (it runs above the selected cell).
            run("notebook:run-all-above", login_cell + 1)
            button = page.locator("button.widget-button", has_text="Log in")
            expect(button).to_be_visible(timeout=60_000)
            form = page.locator(".widget-vbox", has=button)
            form.locator(".widget-text", has_text="Base URL").locator("input").fill(
                emu.base_url)
            form.locator(".widget-text", has_text="Client ID").locator("input").fill(CLIENT_ID)
            form.locator("input[type=password]").fill(CLIENT_SECRET)
            button.click()
            ok = page.locator(".dapframe-login-ok")
            expect(ok).to_be_visible(timeout=30_000)
            expect(ok).to_contain_text("Logged in to")
            expect(ok).to_contain_text("Token valid until")
            expect(ok).to_contain_text("canvas (9): accounts")
            expect(form.locator("input[type=password]")).to_have_value("")
            ok.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "01-login.png"))

            # The rest of the notebook: snapshot, tick, %dap incremental canvas.accounts, ...
            run("notebook:run-all-below", login_cell + 1)
            expect(page.locator(".jp-RenderedImage img")).to_be_visible(timeout=120_000)
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            cell = page.locator(".jp-Notebook .jp-Cell").nth(incremental_cell)
            result = cell.locator(".dapframe-result")
            expect(result).to_be_visible()
            expect(result).to_contain_text("canvas.accounts")
            expect(result).to_contain_text("incremental")
            expect(result).to_contain_text("since 2026-11-01T00:00:00Z")
            expect(result).to_contain_text("updated")
            assert result.locator("table tbody tr").count() >= 1
            # The download's progress bar, drawn full and green.
            expect(cell.locator(".widget-hprogress .progress-bar-success")).to_have_count(1)
            expect(cell.locator(".widget-html-content")).to_contain_text("1/1 parts")
            expect(page.locator(".jp-OutputArea-output[data-mime-type="
                                "'application/vnd.jupyter.stderr']")).to_have_count(0)
            result.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "02-incremental.png"))
            page.locator(".jp-RenderedImage img").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "03-plot.png"))

            before = notebook.stat().st_mtime_ns
            # The command's promise is awaited: the file is written when this returns.
            page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
            deadline = time.monotonic() + 30
            while notebook.stat().st_mtime_ns == before and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            browser.close()

    saved = notebook.read_text()
    assert notebook.stat().st_mtime_ns != before, "the notebook was not saved"
    assert "dapframe-login-ok" in saved  # the outputs are there...
    state = json.loads(saved)["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]
    passwords = [m["state"] for m in state["state"].values() if m["model_name"] == "PasswordModel"]
    assert passwords and all(s.get("value", "") == "" for s in passwords)
    assert CLIENT_SECRET not in saved  # ...and the secret is not
    for shot in ("01-login.png", "02-incremental.png", "03-plot.png"):
        assert (shots / shot).stat().st_size > 10_000
