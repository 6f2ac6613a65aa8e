"""Settings: read once from ``RELAIS_*`` environment variables and an optional
TOML config file, validated into a frozen dataclass.

A missing or wrong value stops start-up with a :class:`ConfigError` that names
the setting. Secrets are wrapped in :class:`Secret` so they never print.
Precedence: environment, then the config file (``RELAIS_CONFIG`` or
``--config``), then the defaults below.
"""

from __future__ import annotations

import math
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot import PROJECT_ROOT
from bot.errors import ConfigError


class Secret:
    """A string that does not show itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str = field(repr=False)  # may hold a password
    smtp_url: str = field(default="smtp://127.0.0.1:2525", repr=False)  # may hold a password
    mail_from: str = "Relais <relais@localhost>"
    base_url: str = "http://127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: int = 8080
    secret_key: Secret = field(default_factory=lambda: Secret(""))
    fb_app_secret: Secret = field(default_factory=lambda: Secret(""))
    fb_verify_token: Secret = field(default_factory=lambda: Secret(""))
    fb_graph_url: str = "https://graph.facebook.com"
    fb_graph_version: str = "v21.0"
    x_api_url: str = "https://api.twitter.com"
    rules_file: Path = PROJECT_ROOT / "routing_rules.yaml"
    templates_dir: Path = PROJECT_ROOT / "templates"
    models_dir: Path | None = None
    webhook_max_bytes: int = 4 * 1024 * 1024
    poll_interval_s: float = 60.0
    worker_concurrency: int = 4
    worker_batch: int = 64  # jobs of one batch kind (ingest, classify, ...) a worker takes in one claim
    worker_lease_s: float = 120.0  # a claimed job is held this long, renewed while it runs
    reply_link_ttl_s: int = 7 * 24 * 3600
    timezone: str = "Europe/Paris"
    metrics_token: Secret = field(default_factory=lambda: Secret(""))  # bearer token for /metrics
    log_format: str = "text"  # text|json (bot.logs); read from the environment before the rest
    retention_days: int | None = None  # erase item text and authors after this many days; None: keep
    kpi_file: Path | None = None  # business calendar, digest, early warning (docs/kpis.md); None: defaults, all off
    digest_schedule: str = ""  # e.g. "MON 08:00" in `timezone`; overrides kpi.yaml's digest.schedule
    ui_language: str = "fr"  # the web UI's language for people who have not chosen one
    rules_reload_s: float = 5.0  # how often the server looks for a changed rules file (bot.pipeline.rules_reload)

    @property
    def model_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"


# name of the setting -> (environment variable, parser)
def _int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{name} must be a {'/'.join(schemes)} URL with a host, got {raw!r}")
    return raw.rstrip("/")


_FIELDS: dict[str, str] = {
    "data_dir": "RELAIS_DATA_DIR",
    "database_url": "RELAIS_DATABASE_URL",
    "smtp_url": "RELAIS_SMTP_URL",
    "mail_from": "RELAIS_MAIL_FROM",
    "base_url": "RELAIS_BASE_URL",
    "host": "RELAIS_HOST",
    "port": "RELAIS_PORT",
    "secret_key": "RELAIS_SECRET_KEY",
    "fb_app_secret": "RELAIS_FB_APP_SECRET",
    "fb_verify_token": "RELAIS_FB_VERIFY_TOKEN",
    "fb_graph_url": "RELAIS_FB_GRAPH_URL",
    "fb_graph_version": "RELAIS_FB_GRAPH_VERSION",
    "x_api_url": "RELAIS_X_API_URL",
    "rules_file": "RELAIS_RULES_FILE",
    "templates_dir": "RELAIS_TEMPLATES_DIR",
    "models_dir": "RELAIS_MODELS_DIR",
    "webhook_max_bytes": "RELAIS_WEBHOOK_MAX_BYTES",
    "poll_interval_s": "RELAIS_POLL_INTERVAL",
    "worker_concurrency": "RELAIS_WORKER_CONCURRENCY",
    "worker_batch": "RELAIS_WORKER_BATCH",
    "worker_lease_s": "RELAIS_WORKER_LEASE",
    "reply_link_ttl_s": "RELAIS_REPLY_LINK_TTL",
    "timezone": "RELAIS_TIMEZONE",
    "metrics_token": "RELAIS_METRICS_TOKEN",
    "log_format": "RELAIS_LOG_FORMAT",
    "retention_days": "RELAIS_RETENTION_DAYS",
    "kpi_file": "RELAIS_KPI_FILE",
    "digest_schedule": "RELAIS_DIGEST_SCHEDULE",
    "ui_language": "RELAIS_UI_LANGUAGE",
    "rules_reload_s": "RELAIS_RULES_RELOAD_INTERVAL",
}


def _convert(key: str, raw: str) -> Any:
    name = _FIELDS[key]
    if key in ("secret_key", "fb_app_secret", "fb_verify_token", "metrics_token"):
        return Secret(raw)
    if key == "log_format":
        if raw not in ("text", "json"):
            raise ConfigError(f"{name} must be text or json, got {raw!r}")
        return raw
    if key in ("data_dir", "rules_file", "templates_dir", "models_dir", "kpi_file"):
        return Path(raw).expanduser()
    if key in ("port", "webhook_max_bytes", "worker_concurrency", "worker_batch", "reply_link_ttl_s", "retention_days"):
        value = _int(name, raw)
        if key == "port" and value > 65535:
            raise ConfigError(f"{name} must be a TCP port (1-65535), got {raw!r}")
        if key == "webhook_max_bytes" and value < 1024 * 1024:
            raise ConfigError(f"{name} must be at least 1048576 (a batch of 1,000 updates)")
        return value
    if key in ("poll_interval_s", "worker_lease_s", "rules_reload_s"):
        return _float(name, raw)
    if key == "smtp_url":
        from bot.notify.smtp import SmtpSettings

        try:
            SmtpSettings.from_url(raw)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return raw
    if key in ("base_url", "fb_graph_url", "x_api_url"):
        return _url(name, raw, ("http", "https"))
    if key == "database_url":
        if not raw.startswith(("sqlite", "postgresql")):
            raise ConfigError(f"{name} must be a sqlite:/// or postgresql:// URL, got a {raw.split(':')[0]!r} URL")
        return raw
    if key == "digest_schedule":
        from bot.kpi.schedule import parse_schedule

        try:
            parse_schedule(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        return raw
    if key == "timezone":
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{name} must be an IANA time zone such as Europe/Paris, got {raw!r}") from None
        return raw
    if key == "ui_language":
        if raw not in ("fr", "en"):
            raise ConfigError(f"{name} must be fr or en, got {raw!r}")
        return raw
    return raw


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from ``env`` (default: ``os.environ``), a config file and overrides.

    Overrides are already-typed values from command-line options; they win.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    path = config_file or (Path(env["RELAIS_CONFIG"]) if env.get("RELAIS_CONFIG") else None)
    if path is not None:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"RELAIS_CONFIG: config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"RELAIS_CONFIG: {path} is not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"RELAIS_CONFIG: {path} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"RELAIS_CONFIG: cannot read {path}: {exc.strerror}") from None
        for key, value in table.items():
            if key not in _FIELDS:
                raise ConfigError(f"RELAIS_CONFIG: {path}: unknown setting {key!r}")
            raw[key] = _convert(key, str(value))
    for key, var in _FIELDS.items():
        if env.get(var):
            raw[key] = _convert(key, env[var])
    for key, value in overrides.items():
        if value is None:
            continue
        # command-line values are checked like the environment's
        raw[key] = _convert(key, str(value)) if key in ("port", "host", "base_url") else value

    data_dir = Path(raw.pop("data_dir", Path.cwd() / "data"))
    if "database_url" not in raw:
        raw["database_url"] = f"sqlite:///{data_dir / 'relais.db'}"
    settings = Settings(data_dir=data_dir, **raw)
    for key in ("rules_file",):
        if not getattr(settings, key).exists():
            raise ConfigError(f"{_FIELDS[key]}: {getattr(settings, key)} does not exist")
    if not (settings.templates_dir / "emails").is_dir():
        raise ConfigError(f"RELAIS_TEMPLATES_DIR: {settings.templates_dir} has no emails/ folder")
    return settings


def url_passwords(settings: Settings) -> list[str]:
    """Passwords written inside the database and SMTP URLs (to keep out of logs)."""
    found = []
    for url in (settings.database_url, settings.smtp_url):
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            found.append(password)
    return found


def ensure_secret_key(settings: Settings) -> Settings:
    """Give the settings a signing key: ``RELAIS_SECRET_KEY``, or one kept in the data folder.

    The generated key lives in ``<data_dir>/secret_key`` (mode 0600) so that reply
    links survive a restart of an embedded installation.
    """
    if settings.secret_key:
        return settings
    path = settings.data_dir / "secret_key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return replace(settings, secret_key=Secret(path.read_text().strip()))
