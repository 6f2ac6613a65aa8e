"""Dependency audit for CI: pip-audit over the installed environment (.venv).

Exit 1 when a known vulnerability is found; a failure to reach the vulnerability
service (PyPI's JSON API) is only a warning (exit 0), so a network outage does
not fail the build. Packages the service does not know (local builds, this
project itself) are listed as skipped. Usage: ``.venv/bin/python scripts/audit.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PIP_AUDIT = Path(sys.executable).with_name("pip-audit")
COMMAND = [str(PIP_AUDIT), "--skip-editable", "--progress-spinner", "off", "--format", "json"]


def verdict(returncode: int, stdout: str, stderr: str) -> tuple[int, str]:
    """The exit status and the message for one pip-audit run."""
    try:
        report = json.loads(stdout)
        dependencies = report["dependencies"]
    except (ValueError, KeyError, TypeError):
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return 0, f"warning: dependency audit not done (pip-audit exit {returncode}: {last[:300]})"
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d["name"] for d in dependencies if d.get("skip_reason")]
    if vulnerable:
        lines = [f"  {d['name']} {d.get('version', '?')}: " + ", ".join(
            f"{v.get('id')} (fixed in {', '.join(v.get('fix_versions') or []) or 'no release yet'})"
            for v in d["vulns"]) for d in vulnerable]
        return 1, "dependency audit: known vulnerabilities:\n" + "\n".join(lines)
    audited = len(dependencies) - len(skipped)
    if dependencies and not audited:
        return 0, (f"warning: dependency audit not done: the vulnerability service knew none of the "
                   f"{len(skipped)} installed packages (offline, or a mirror without PyPI's JSON API?)")
    message = f"dependency audit: no known vulnerabilities in {audited} package(s)"
    if skipped:
        message += f"; {len(skipped)} not found on PyPI, not audited: {', '.join(sorted(skipped))}"
    return 0, message


def main() -> int:
    try:
        done = subprocess.run(COMMAND, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"warning: dependency audit not done: {exc}", file=sys.stderr)
        return 0
    status, message = verdict(done.returncode, done.stdout, done.stderr)
    print(message, file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
