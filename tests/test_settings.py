"""load_settings: every wrong value is refused with its name; secrets never show."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot import PROJECT_ROOT
from bot.errors import ConfigError
from bot.settings import Secret, Settings, load_settings
from tests.conftest import free_port

SUBPROCESS_TIMEOUT = 120


def base_env(tmp_path: Path) -> dict[str, str]:
    return {"RELAIS_DATA_DIR": str(tmp_path / "data")}


def test_defaults_load(tmp_path: Path) -> None:
    settings = load_settings(env=base_env(tmp_path))
    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'relais.db'}"
    assert settings.port == 8080
    assert settings.rules_file == PROJECT_ROOT / "routing_rules.yaml"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RELAIS_PORT", "abc"),
        ("RELAIS_PORT", "70000"),
        ("RELAIS_PORT", "0"),
        ("RELAIS_SMTP_URL", "ftp://x"),
        ("RELAIS_SMTP_URL", "smtp://"),
        ("RELAIS_DATABASE_URL", "mysql://x"),
        ("RELAIS_BASE_URL", "ftp://example.com"),
        ("RELAIS_TIMEZONE", "Mars/Olympus"),
        ("RELAIS_WEBHOOK_MAX_BYTES", "10"),
        ("RELAIS_WORKER_CONCURRENCY", "-3"),
        ("RELAIS_WORKER_BATCH", "0"),
        ("RELAIS_WORKER_BATCH", "many"),
        ("RELAIS_POLL_INTERVAL", "soon"),
        ("RELAIS_POLL_INTERVAL", "nan"),
    ],
)
def test_wrong_value_is_refused_with_its_name(tmp_path: Path, variable: str, value: str) -> None:
    env = base_env(tmp_path) | {variable: value}
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    assert variable in str(caught.value)


def test_missing_rules_file_is_named(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"RELAIS_RULES_FILE": str(tmp_path / "nope.yaml")}
    with pytest.raises(ConfigError, match="RELAIS_RULES_FILE"):
        load_settings(env=env)


def test_templates_dir_without_emails_is_named(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"RELAIS_TEMPLATES_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="RELAIS_TEMPLATES_DIR"):
        load_settings(env=env)


def test_config_file_that_is_not_toml(tmp_path: Path) -> None:
    config = tmp_path / "relais.toml"
    config.write_text("port = = 8080\n[unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="RELAIS_CONFIG"):
        load_settings(env=base_env(tmp_path) | {"RELAIS_CONFIG": str(config)})


def test_config_file_that_is_not_text(tmp_path: Path) -> None:
    """A binary (non UTF-8) config file is a configuration error, not a crash."""
    config = tmp_path / "relais.toml"
    config.write_bytes(b"port = 8080\nmail_from = \"Caf\xe9\"\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match="RELAIS_CONFIG"):
        load_settings(env=base_env(tmp_path) | {"RELAIS_CONFIG": str(config)})


def test_config_file_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RELAIS_CONFIG"):
        load_settings(env=base_env(tmp_path) | {"RELAIS_CONFIG": str(tmp_path)})


def test_config_file_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RELAIS_CONFIG"):
        load_settings(env=base_env(tmp_path) | {"RELAIS_CONFIG": str(tmp_path / "missing.toml")})


def test_unknown_key_in_config_file(tmp_path: Path) -> None:
    config = tmp_path / "relais.toml"
    config.write_text('smtp_url = "smtp://mail.example:25"\nsmtp_urll = "smtp://typo:25"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(env=base_env(tmp_path) | {"RELAIS_CONFIG": str(config)})
    assert "RELAIS_CONFIG" in str(caught.value)
    assert "smtp_urll" in str(caught.value)


def test_wrong_value_in_config_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "relais.toml"
    config.write_text('port = "abc"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="PORT"):
        load_settings(env=base_env(tmp_path), config_file=config)


def test_config_file_values_are_used(tmp_path: Path) -> None:
    config = tmp_path / "relais.toml"
    config.write_text(
        'port = 9001\nsmtp_url = "smtps://mail.example:465"\ntimezone = "America/Montreal"\n',
        encoding="utf-8",
    )
    settings = load_settings(env=base_env(tmp_path), config_file=config)
    assert settings.port == 9001
    assert settings.smtp_url == "smtps://mail.example:465"
    assert settings.timezone == "America/Montreal"


def test_environment_overrides_config_file(tmp_path: Path) -> None:
    config = tmp_path / "relais.toml"
    config.write_text('port = 9001\nmail_from = "From File <file@example.com>"\n', encoding="utf-8")
    env = base_env(tmp_path) | {"RELAIS_CONFIG": str(config), "RELAIS_PORT": "9002"}
    settings = load_settings(env=env)
    assert settings.port == 9002  # environment wins
    assert settings.mail_from == "From File <file@example.com>"  # file still used for the rest


def test_command_line_overrides_environment(tmp_path: Path) -> None:
    settings = load_settings(env=base_env(tmp_path) | {"RELAIS_PORT": "9002"}, port=9003)
    assert settings.port == 9003


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(env=base_env(tmp_path))
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_secret_never_shows_its_value(tmp_path: Path) -> None:
    value = "hunter2-very-secret-value"
    secret = Secret(value)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s %r" % (secret, secret)):  # noqa: UP031 - %-format on purpose
        assert value not in shown
    assert secret.reveal() == value
    assert secret == Secret(value) and secret != Secret("other")
    assert bool(secret) and not Secret("")


def test_settings_repr_masks_secrets(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {
        "RELAIS_FB_APP_SECRET": "app-secret-abcdef",
        "RELAIS_FB_VERIFY_TOKEN": "verify-token-abcdef",
        "RELAIS_SECRET_KEY": "signing-key-abcdef",
    }
    settings = load_settings(env=env)
    assert isinstance(settings, Settings)
    assert settings.fb_app_secret.reveal() == "app-secret-abcdef"
    shown = repr(settings) + str(settings)
    for value in ("app-secret-abcdef", "verify-token-abcdef", "signing-key-abcdef"):
        assert value not in shown


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        check=False,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=SUBPROCESS_TIMEOUT,
    )


def cli_env(tmp_path: Path, models_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(
        RELAIS_DATA_DIR=str(tmp_path / "data"),
        RELAIS_DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'relais.db'}",
        RELAIS_MODELS_DIR=str(models_dir),
        RELAIS_HOST="127.0.0.1",
        RELAIS_PORT=str(free_port()),
    )
    return env


def test_serve_refuses_facebook_channel_without_app_secret(tmp_path: Path, models_dir: Path) -> None:
    env = cli_env(tmp_path, models_dir)
    added = run_cli(["channels", "add", "facebook", "--page-id", "1", "--name", "P", "--token", "tok-123456"], env, tmp_path)
    assert added.returncode == 0, added.stderr
    served = run_cli(["serve"], env, tmp_path)
    assert served.returncode == 2, served.stderr
    assert "RELAIS_FB_APP_SECRET" in served.stderr


def test_serve_config_error_is_one_clean_message(tmp_path: Path, models_dir: Path) -> None:
    """cli.py promises 'a one-line message naming the setting and exit status 2': no traceback."""
    env = cli_env(tmp_path, models_dir)
    added = run_cli(["channels", "add", "facebook", "--page-id", "1", "--name", "P", "--token", "tok-123456"], env, tmp_path)
    assert added.returncode == 0, added.stderr
    served = run_cli(["serve"], env, tmp_path)
    assert served.returncode == 2
    assert "Traceback" not in served.stderr, served.stderr
