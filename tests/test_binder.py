"""The Binder files, as far as they can be tried here: a fresh venv, postBuild, then start.

repo2docker would build an image: here a fresh virtual environment stands in for it. The
requirements are installed the way repo2docker does (uv instead of pip for speed, held to the
versions of uv.lock so that nothing new is downloaded), then ``binder/postBuild`` runs from a
copy of the repository and ``binder/start`` runs a check: the emulator it started answers, and
the notebooks execute against it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import pytest

from .conftest import _uv

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"

pytestmark = pytest.mark.slow


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[;\s]", r.strip(), maxsplit=1)[0].lower() for r in requirements
            if r.strip() and not r.strip().startswith("#")}


def test_requirements_match_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"])
    for extra in ("frames", "notebook"):
        wanted |= _names(project["optional-dependencies"][extra])
    listed = _names((BINDER / "requirements.txt").read_text().splitlines())
    assert wanted <= listed, f"missing from binder/requirements.txt: {sorted(wanted - listed)}"
    for script in ("postBuild", "start"):
        assert os.access(BINDER / script, os.X_OK), f"binder/{script} is not executable"


CHECK = '''
import json, os, sys, urllib.request
from pathlib import Path

import nbformat
from nbclient import NotebookClient

import dapframe
from dapframe.api import DapClient

url = os.environ["DAP_API_URL"]
state = json.load(urllib.request.urlopen(url + "/emulator/state", timeout=5))
with DapClient(rate_limits=None) as client:          # DAP_* from binder/start
    tables = client.list_tables("canvas")
status = ""
for arg in sys.argv[1:]:
    notebook = Path(arg)
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    status += "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.outputs)
print(json.dumps({"dapframe": dapframe.__file__, "url": url, "step": state.get("step"),
                  "tables": tables, "from_env": "(from the environment)" in status,
                  "emulator_started_in_kernel": "Emulator running in this kernel" in status}))
'''


def test_postbuild_and_start_in_a_fresh_venv(tmp_path: Path) -> None:
    uv = _uv()
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cache", "__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache",
        ".pytest_cache", "downloads", "demo-output", "bench", "tests"))
    venv = tmp_path / "venv"
    base_env = {k: v for k, v in os.environ.items()
                if k != "VIRTUAL_ENV" and not k.startswith("DAP_")}
    subprocess.run([uv, "venv", "--quiet", "--seed", "--python", sys.executable, str(venv)],
                   check=True, env=base_env)
    pins = tmp_path / "pins.txt"
    subprocess.run([uv, "export", "--quiet", "--frozen", "--no-hashes", "--all-extras",
                    "--no-dev", "--no-emit-project", "-o", str(pins)],
                   check=True, cwd=ROOT, env=base_env)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                    "-r", str(BINDER / "requirements.txt"), "-c", str(pins)],
                   check=True, env=base_env, timeout=300)

    home = tmp_path / "home"
    home.mkdir()
    env = {**base_env, "HOME": str(home), "PATH": f"{venv / 'bin'}:{base_env['PATH']}",
           "DAPFRAME_EMULATOR_PORT": str(_free_port()),
           "DAPFRAME_CACHE_DIR": str(tmp_path / "cache"), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    build = subprocess.run(["bash", "binder/postBuild"], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    settings = home / ".jupyter/lab/user-settings/@jupyterlab/apputils-extension"
    assert (settings / "notification.jupyterlab-settings").exists()

    check = tmp_path / "check.py"
    check.write_text(textwrap.dedent(CHECK))
    try:
        run = subprocess.run(["bash", "binder/start", "python", str(check),
                              *sorted(str(p) for p in (repo / "notebooks").glob("*.ipynb"))],
                             cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    finally:
        _stop_emulator(home)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    facts = json.loads(run.stdout.strip().splitlines()[-1])
    # dapframe came from the venv (installed by postBuild), not from the checkout.
    assert facts["dapframe"].startswith(str(venv)), facts["dapframe"]
    assert facts["url"] == f"http://127.0.0.1:{env['DAPFRAME_EMULATOR_PORT']}"
    assert facts["step"] == 0 and "accounts" in facts["tables"]
    # The notebooks used the emulator binder/start runs, not one of their own.
    assert facts["from_env"] and not facts["emulator_started_in_kernel"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_emulator(home: Path) -> None:
    """Stop the emulator binder/start left running (by the PID it wrote)."""
    pid_file = home / ".dapframe-emulator.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
