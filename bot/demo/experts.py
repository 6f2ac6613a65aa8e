"""Scripted experts: they read their notification emails in the mail catcher,
follow the reply link, and send the suggested reply through the reply page —
over HTTP, exactly as a person's browser would."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Callable
from email.message import EmailMessage

import aiohttp

from bot.demo.mailcatcher import MailCatcher

log = logging.getLogger(__name__)

_LINK = re.compile(r"https?://[^\s\"'<>]+/reply/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")
_FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
_TEXTAREA = re.compile(r'<textarea id="(text|ack_text)"[^>]*>(.*?)</textarea>', re.S)
_MODE = re.compile(r'name="mode" value="(public|private)" checked')


def reply_link(message: EmailMessage) -> str | None:
    body = message.get_body(("plain",))
    found = _LINK.search(body.get_content() if body else "")
    return found.group(0) if found else None


async def answer(session: aiohttp.ClientSession, link: str) -> int:
    """Open the reply page, keep the draft and the suggested mode, send. Returns the HTTP status."""
    async with session.get(link) as page:
        if page.status != 200:
            return page.status
        text = await page.text()
    key = _FORM_KEY.search(text)
    fields = {name: html.unescape(value) for name, value in _TEXTAREA.findall(text)}
    mode = _MODE.search(text)
    form = {
        "form_key": key.group(1) if key else "",
        "text": fields.get("text", ""),
        "ack_text": fields.get("ack_text", ""),
        "mode": mode.group(1) if mode else "public",
    }
    async with session.post(link, data=form, allow_redirects=False) as sent:
        return sent.status


async def run_experts(
    catcher: MailCatcher,
    should_answer: Callable[[EmailMessage], bool],
    stop: asyncio.Event,
    delay_s: float = 4.0,
) -> None:
    """Answer each notification ``delay_s`` after it arrives, until ``stop``."""
    seen = 0
    async with aiohttp.ClientSession() as session:
        pending: list[asyncio.Task[int]] = []
        while not stop.is_set():
            for message in catcher.messages[seen:]:
                link = reply_link(message)
                if link and should_answer(message):
                    pending.append(asyncio.create_task(_later(session, link, delay_s)))
            seen = len(catcher.messages)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _later(session: aiohttp.ClientSession, link: str, delay_s: float) -> int:
    await asyncio.sleep(delay_s)
    status = await answer(session, link)
    if status != 303:
        log.warning("scripted expert: the reply page answered %s", status)
    return status
