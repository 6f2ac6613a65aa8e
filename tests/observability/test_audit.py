"""The CI dependency audit (scripts/audit.py): a known vulnerability fails the run, an
unreachable vulnerability service is only a warning."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType

from bot import PROJECT_ROOT


def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("relais_audit", PROJECT_ROOT / "scripts" / "audit.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(*deps: dict[str, object]) -> str:
    return json.dumps({"dependencies": list(deps), "fixes": []})


def test_a_known_vulnerability_fails_the_run() -> None:
    status, message = audit().verdict(1, report(
        {"name": "aiohttp", "version": "3.9.0", "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["3.9.2"]}]},
        {"name": "yarl", "version": "1.9.0", "vulns": []},
    ), "")
    assert status == 1
    assert "aiohttp 3.9.0: GHSA-xxxx (fixed in 3.9.2)" in message


def test_no_vulnerability_passes_and_names_what_was_not_audited() -> None:
    status, message = audit().verdict(0, report(
        {"name": "aiohttp", "version": "3.9.0", "vulns": []},
        {"name": "relais", "skip_reason": "Dependency not found on PyPI"},
    ), "")
    assert status == 0
    assert "no known vulnerabilities in 1 package(s)" in message and "relais" in message


def test_an_unreachable_service_is_a_warning_not_a_failure() -> None:
    status, message = audit().verdict(1, "", "ConnectionError: Max retries exceeded with url: /pypi/aiohttp/json")
    assert status == 0 and message.startswith("warning:") and "ConnectionError" in message
    status, message = audit().verdict(0, report({"name": "aiohttp", "skip_reason": "not found"}), "")
    assert status == 0 and message.startswith("warning: dependency audit not done")
