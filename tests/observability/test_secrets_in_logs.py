"""A full demo run at DEBUG level, on PostgreSQL with a password in its URL, with every
secret set in the environment: no log line (stdout or stderr, text or JSON) holds one."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.cli.relais_runner import make_relais
from tests.conftest import free_port

SECRETS = {
    "RELAIS_FB_APP_SECRET": "app-secret-5f1d2c9e7a",
    "RELAIS_FB_VERIFY_TOKEN": "verify-token-8b3e6d1f",
    "RELAIS_SECRET_KEY": "signing-key-3c7a9e2b4d",
    "RELAIS_METRICS_TOKEN": "metrics-token-9d2f4b6a",
    "RELAIS_FB_PAGE_TOKEN": "page-token-env-1a2b3c4d",
}
SMTP_PASSWORD = "smtp-pass-7e4c1a9f"
DB_PASSWORD = "db-pass-2b8d5f3e"


def test_a_debug_demo_run_never_logs_a_secret(tmp_path: Path, models_dir: Path, pg_url: str) -> None:
    database_url = pg_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)  # trust auth: any password
    assert DB_PASSWORD in database_url
    relais = make_relais(tmp_path, database_url, models_dir)
    relais.env.update(SECRETS, RELAIS_SMTP_URL=f"smtp://relais:{SMTP_PASSWORD}@127.0.0.1:2525",
                      RELAIS_LOG_FORMAT="json")  # JSON lines also carry extra fields: the wider path
    done = relais("demo", "-v", "--duration", "20", "--speed", "3", "--port", str(free_port()))
    logs = done.stdout + done.stderr
    assert "Relais demo summary" in done.stdout
    assert '"level": "DEBUG"' in logs, "the run logged at DEBUG level"
    assert "***" in logs, "secrets were on their way into log lines, and were scrubbed"
    with psycopg.connect(pg_url) as conn:  # the demo's own page tokens
        page_tokens = [value for (creds,) in conn.execute("SELECT credentials FROM channels")
                       for value in (creds or {}).values() if isinstance(value, str) and len(value) > 8]
    assert page_tokens, "the demo stored its channels' tokens"
    for secret in [*SECRETS.values(), SMTP_PASSWORD, DB_PASSWORD, *page_tokens]:
        leaked = [line for line in logs.splitlines() if secret in line]
        assert not leaked, f"{secret!r} is in the logs: {leaked[:3]}"
