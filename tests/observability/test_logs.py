"""Log lines as text or JSON (bot/logs.py): secrets scrubbed from messages, arguments,
extra fields and tracebacks; job and item ids on every line a job writes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bot import logs
from bot.cli import main

SECRET = "tok-3f9a1c7e5b"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


async def test_json_lines_carry_the_job_context_and_never_a_secret(
        restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup(logging.DEBUG, "json")
    logs.hide(SECRET)
    log = logging.getLogger("bot.test")

    async def classify(payload: dict[str, Any]) -> None:
        log.info("classifying with token %s", SECRET, extra={"label": "complaint", "raw": SECRET})
        try:
            raise RuntimeError(f"Graph said no to {SECRET}")
        except RuntimeError:
            log.exception("stage failed")

    handlers = logs.with_job_context({"classify": classify})
    await handlers["classify"]({"item_id": 42, "relabel_only": True})
    log.warning("outside any job")
    records = lines(capsys.readouterr().err)
    assert SECRET not in json.dumps(records)
    first, failed, outside = records
    assert first["message"] == "classifying with token ***"
    assert first["level"] == "INFO" and first["logger"] == "bot.test"
    assert first["job_kind"] == "classify" and first["item_id"] == 42
    assert "relabel_only" not in first
    assert first["label"] == "complaint" and first["raw"] == "***"
    assert failed["item_id"] == 42 and "RuntimeError: Graph said no to ***" in failed["exc"]
    assert "item_id" not in outside and "job_kind" not in outside


def test_text_lines_show_the_context_fields(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup(logging.INFO, "text")
    with logs.context(item_id=7, delivery_id=3):
        logging.getLogger("bot.test").info("stored")
    err = capsys.readouterr().err
    assert "INFO bot.test: stored [item_id=7 delivery_id=3]" in err


def test_an_unknown_log_format_is_a_configuration_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RELAIS_LOG_FORMAT", "xml")
    assert main(["db", "upgrade"]) == 2
    assert "RELAIS_LOG_FORMAT must be text or json" in capsys.readouterr().err
