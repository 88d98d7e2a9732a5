"""Property-based run of schemathesis against the served OpenAPI document: whatever it sends
(any operation, any schema-valid or schema-breaking body, path and header), a live server
answers without a 5xx and keeps serving."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
from serve_helpers import TOKEN, make_bundles

pytest.importorskip("schemathesis")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    bundles = make_bundles(tmp_path_factory.mktemp("schemathesis"))
    port = _free_port()
    cmd = [sys.executable, "-m", "modelfab.cli", "serve", "--bundles-dir", str(bundles),
           "--port", str(port), "--refresh-s", "0", "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "MODELFAB_SERVE_TOKEN": TOKEN}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(10)


def test_schemathesis_finds_no_server_error(server, tmp_path):
    # Path parameter "name" pinned to a hosted model so the generated bodies reach inference;
    # the admin endpoints get no token here (they answer 401; test_serve.py covers them).
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\n"path.name" = "alpha"\n')
    st = [sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis as st; "
          "sys.exit(st())"]  # fmt: skip
    cmd = [*st, "--config-file", str(config), "run", f"{server}/openapi.json",
           "--checks", "not_a_server_error", "--max-examples", "30", "--generation-deterministic",
           "--request-timeout", "10"]  # fmt: skip
    # cwd: schemathesis keeps a cache folder in its working directory, not in the checkout
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", out.stdout)
    assert counts is not None and counts[1] == counts[2] and int(counts[1]) > 100, out.stdout
    assert httpx.get(f"{server}/v2/health/live", timeout=5).status_code == 200
