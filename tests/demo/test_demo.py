"""`relais demo` as a newcomer runs it: items flow to answers, visible in `relais items`,
and Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.relais_runner import make_relais
from tests.conftest import free_port


def test_demo_runs_for_its_duration_and_leaves_answered_items(tmp_path: Path, models_dir: Path) -> None:
    relais = make_relais(tmp_path, f"sqlite:///{tmp_path / 'data' / 'relais.db'}", models_dir)
    done = relais("demo", "--duration", "30", "--port", str(free_port()), "--speed", "2")
    assert "Relais demo summary" in done.stdout
    items = json.loads(relais("items", "--format", "json").stdout)
    customer = [i for i in items if not i["is_brand_post"]]
    assert len(customer) >= 8
    assert {i["platform"] for i in customer} == {"facebook", "x"}
    assert all(i["label"] in ("complaint", "product_feedback", "ad_reaction", "other") for i in customer if i["label"])
    answered = [i for i in customer if i["status"] == "answered"]
    assert answered and all(i["first_response_s"] and i["first_response_s"] > 0 for i in answered)
    assert any(i["assignee"] for i in customer)  # routed to experts, emailed (the scripted experts read the mail)
    assert any(i["status"] in ("notified", "triage") for i in customer)  # not everything is answered by script


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path, models_dir: Path) -> None:
    relais = make_relais(tmp_path, f"sqlite:///{tmp_path / 'data' / 'relais.db'}", models_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "demo", "--port", str(free_port())],
        env=relais.env, cwd=relais.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while "Relais demo is running" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
            seen += line
        assert "Relais demo is running" in seen
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Relais demo summary" in out
    assert "Traceback" not in err
