"""Compose the notification email an expert receives, and draft suggested replies.

Everything that came from a platform (post text, author, parent post...) is
hostile: the HTML template is autoescaped, :func:`sanitize_for_display` defuses
bidi overrides and control characters, and the subject is flattened to one line
so it can never carry a header. Templates live in ``templates/emails/`` (with the
FR/EN labels in ``strings.json``) and ``templates/replies/``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from markupsafe import Markup, escape

log = logging.getLogger(__name__)

LANGUAGES = ("fr", "en")
#: escalated: to the new assignee at 100 %; handover: to the one it was taken from;
#: fyi: a copy for a person a rule notifies
KINDS_OF_MAIL = ("new", "reminder", "escalation", "escalated", "handover", "fyi")
SUBJECT_MAX_CHARS = 160
STRINGS_TEMPLATE = "emails/strings.json"

_FR_DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_FR_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
              "septembre", "octobre", "novembre", "décembre")
_EN_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December")
_PLATFORMS = {"facebook": "Facebook", "instagram": "Instagram", "x": "X"}
_HEADLINE_COLORS = {
    "new": "#1d4ed8", "reminder": "#b45309", "escalation": "#b91c1c",
    "escalated": "#b91c1c", "handover": "#4b5563", "fyi": "#4b5563",
}

_LINE_BREAKS = re.compile("\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # keeps \t and \n
_WHITESPACE = re.compile(r"\s+")
_SAFE_NAME = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class NotificationView:
    """Everything the notification shows, already looked up by the pipeline.

    Datetimes are timezone-aware (``sla_due`` in UTC); they are shown in
    ``expert_timezone`` (an IANA name). ``language`` is "fr" or "en";
    ``kind_of_mail`` is "new", "reminder" or "escalation" and only changes the
    headline (and a subject prefix).
    """

    item_id: int
    platform: str
    page_name: str
    kind: str
    author_name: str
    author_handle: str
    author_followers: int | None
    text: str
    created_time: datetime
    permalink: str | None
    parent_text: str | None
    parent_is_ad: bool
    category: str
    confidence: float
    explanation: tuple[str, ...]
    rule_name: str
    reply_mode: str
    sla_due: datetime
    expert_name: str
    expert_timezone: str
    suggested_reply: str
    reply_url: str
    language: str
    kind_of_mail: str = "new"
    priority: str = "normal"  # low|normal|high|urgent: shown unless normal


@dataclass(frozen=True)
class ComposedEmail:
    subject: str
    text: str
    html: str


def sanitize_for_display(text: str) -> str:
    """Make hostile text safe to *show* (escaping for HTML is the template's job).

    Line breaks of every kind become ``\\n``; bidi embedding, override and
    isolate characters (U+202A-U+202E, U+2066-U+2069) are replaced by a visible
    ``[U+202E]``-style marker, so a right-to-left override can neither reverse
    what the expert reads nor pass unnoticed; other control characters are
    removed. Emoji, including zero-width-joiner sequences, are kept.
    """
    text = _LINE_BREAKS.sub("\n", text)
    text = _BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)
    return _CONTROLS.sub("", text)


_FR_CUES = {
    "parent post is an ad": "publication parente : une publicité",
    "comment under an ad": "commentaire sous une publicité",
    "repeated exclamation marks": "points d’exclamation répétés",
    "question mark": "point d’interrogation",
    "ALL-CAPS words": "mots en MAJUSCULES",
    "an amount of money": "un montant d’argent",
    "very short text": "texte très court",
    "negative emoji": "émoji négatif",
    "positive emoji": "émoji positif",
    "laughing emoji": "émoji rieur",
    "doubtful emoji": "émoji dubitatif",
    "emoji": "émoji",
    "a link": "un lien",
    "an @handle": "une @mention",
    "a long number": "un long nombre",
}
_FR_PREFIXES = (("negated ", "nié : "), ("platform: ", "plateforme : "), ("kind: ", "type : "), ("emoji ", "émoji "))


def explanation_terms(terms: tuple[str, ...] | list[str], language: str) -> list[str]:
    """The classifier's explanation (written in English) in the reader's language."""
    if language != "fr":
        return list(terms)
    out = []
    for term in terms:
        term = _FR_CUES.get(term, term)
        for english, french in _FR_PREFIXES:
            if term.startswith(english):
                term = french + term[len(english):]
                break
        out.append(term)
    return out


def one_line(text: str) -> str:
    """:func:`sanitize_for_display`, then every run of whitespace becomes one space."""
    return _WHITESPACE.sub(" ", sanitize_for_display(text)).strip()


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def format_clock(value: datetime, zone: str, language: str = "fr") -> str:
    """The time of day in ``zone``: "14 h 05" (fr) or "2:05 PM" (en)."""
    return _clock(_to_zone(value, zone)[0], language)


def _clock(local: datetime, language: str) -> str:
    if language == "fr":
        return f"{local.hour} h {local.minute:02d}"
    hour12 = local.hour % 12 or 12
    return f"{hour12}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"


def format_localtime(value: datetime, zone: str, language: str = "fr") -> str:
    """"jeudi 3 décembre 2026 à 14 h 05 (America/Montreal)" or
    "Thursday 3 December 2026, 2:05 PM (America/Montreal)".

    ``value`` must be timezone-aware. An unknown zone falls back to UTC (logged):
    a notification with a UTC time beats no notification.
    """
    local, label = _to_zone(value, zone)
    clock = _clock(local, language)
    if language == "fr":
        day = "1er" if local.day == 1 else str(local.day)
        return (f"{_FR_DAYS[local.weekday()]} {day} {_FR_MONTHS[local.month - 1]} "
                f"{local.year} à {clock} ({label})")
    return (f"{_EN_DAYS[local.weekday()]} {local.day} {_EN_MONTHS[local.month - 1]} "
            f"{local.year}, {clock} ({label})")


def format_percent(value: float, language: str = "fr") -> str:
    """0.873 -> "87 %" (fr) or "87%" (en); clamped to 0-100."""
    number = round(min(max(float(value), 0.0), 1.0) * 100)
    return f"{number} %" if language == "fr" else f"{number}%"


def format_thousands(value: int, language: str = "fr") -> str:
    """1234 -> "1 234" (fr) or "1,234" (en)."""
    grouped = f"{int(value):,}"
    return grouped.replace(",", " ") if language == "fr" else grouped


def make_environment(templates_dir: Path) -> jinja2.Environment:
    """The Jinja2 environment for ``templates/``: HTML autoescaped, undefined is an error.

    Filters: ``localtime(zone, language)``, ``clock(zone, language)``,
    ``percent(language)``, ``thousands(language)``, ``nl2br`` (escapes, then
    turns newlines into ``<br>``).
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2"),
            default_for_string=False,
            default=False,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        localtime=format_localtime,
        clock=format_clock,
        percent=format_percent,
        thousands=format_thousands,
        nl2br=_nl2br,
    )
    return env


def compose_notification(env: jinja2.Environment, view: NotificationView) -> ComposedEmail:
    """Render the notification (subject, plain text, HTML) in the view's language.

    Raises ValueError for a ``kind_of_mail`` it does not know or a ``reply_url``
    that is not http(s). A ``permalink`` that is not http(s) is not linked.
    """
    if view.kind_of_mail not in KINDS_OF_MAIL:
        raise ValueError(f"unknown kind_of_mail {view.kind_of_mail!r}")
    if not _is_web_url(view.reply_url):
        raise ValueError("reply_url must be an http(s) URL")
    lang = view.language if view.language in LANGUAGES else "en"
    t = _strings(env)[lang]
    tz = view.expert_timezone
    page_name = truncate(one_line(view.page_name), 120)
    category_label = t["categories"].get(view.category) or truncate(one_line(view.category), 60)
    expert_name = one_line(view.expert_name)
    subject = _subject(t, view, category_label, page_name, format_clock(view.sla_due, tz, lang))
    text = sanitize_for_display(view.text)
    context: dict[str, Any] = {
        "v": view,
        "t": t,
        "lang": lang,
        "tz": tz,
        "subject": subject,
        "preheader": truncate(one_line(view.text), 110),
        "headline": t["headline"][view.kind_of_mail],
        "headline_color": _HEADLINE_COLORS[view.kind_of_mail],
        "greeting": (t["greeting"].replace("{name}", expert_name) if expert_name
                     else t["greeting_anonymous"]),
        "author": _author(view.author_name, view.author_handle),
        "reach": _reach(view.author_followers, lang, t),
        "platform_label": _PLATFORMS.get(view.platform, one_line(view.platform).capitalize()),
        "kind_label": t["kinds"].get(view.kind, one_line(view.kind)),
        "page_name": page_name,
        "text": text,
        "permalink": view.permalink if _is_web_url(view.permalink) else None,
        "parent_text": None if view.parent_text is None else sanitize_for_display(view.parent_text),
        "category_label": category_label,
        "terms": tuple(one_line(term) for term in explanation_terms(view.explanation, view.language) if one_line(term)),
        "rule_text": t["rule_text"].replace("{rule}", one_line(view.rule_name)),
        "reply_mode_text": t["reply_modes"].get(view.reply_mode, one_line(view.reply_mode)),
        "priority_text": None if view.priority == "normal" else t["priorities"].get(view.priority, one_line(view.priority)),
        "suggested_reply": sanitize_for_display(view.suggested_reply).strip(),
        "reply_url": view.reply_url,
        "footer": t["footer"].replace("{item_id}", str(view.item_id)),
    }
    html = env.get_template("emails/notification.html.j2").render(context)
    plain = env.get_template("emails/notification.txt.j2").render(context)
    return ComposedEmail(subject=subject, text=plain, html=html)


def draft_reply(env: jinja2.Environment, category: str, language: str, **context: Any) -> str:
    """A suggested reply from ``templates/replies/{category}.{language}.txt.j2``.

    Falls back to ``other.{language}``, then to the English templates. Context
    values ``author_name`` and ``page_name`` default to "" and, like every string
    passed, are flattened to one line.
    """
    category = category if _SAFE_NAME.fullmatch(category or "") else "other"
    language = language if _SAFE_NAME.fullmatch(language or "") else "en"
    names: list[str] = []
    for cat, lang in ((category, language), ("other", language), (category, "en"), ("other", "en")):
        name = f"replies/{cat}.{lang}.txt.j2"
        if name not in names:
            names.append(name)
    values: dict[str, Any] = {"author_name": "", "page_name": ""}
    values.update({k: one_line(v) if isinstance(v, str) else v for k, v in context.items()})
    return env.select_template(names).render(values).strip()


def _strings(env: jinja2.Environment) -> dict[str, Any]:
    cached = env.globals.get("_relais_strings")
    if cached is None:
        assert env.loader is not None
        source = env.loader.get_source(env, STRINGS_TEMPLATE)[0]
        cached = env.globals["_relais_strings"] = json.loads(source)
    return cached  # type: ignore[no-any-return]


def _subject(t: dict[str, Any], view: NotificationView, category_label: str,
             page_name: str, clock: str) -> str:
    parts = (t["subject_prefix"][view.kind_of_mail], category_label,
             truncate(page_name, 60), f"{t['subject_due']} {clock}")
    subject = one_line("[Relais] " + " · ".join(part for part in parts if part))
    return truncate(subject, SUBJECT_MAX_CHARS)


def _author(name: str, handle: str) -> str:
    name, handle = one_line(name), one_line(handle)
    if handle and not handle.startswith("@"):
        handle = "@" + handle
    if name and handle:
        return f"{name} ({handle})"
    return name or handle or "?"


def _reach(followers: int | None, lang: str, t: dict[str, Any]) -> str | None:
    if followers is None:
        return None
    singular = followers < 2 if lang == "fr" else followers == 1
    noun = t["follower_one" if singular else "follower_many"]
    return f"{format_thousands(followers, lang)} {noun}"


def _to_zone(value: datetime, zone: str) -> tuple[datetime, str]:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is required")
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r, showing UTC", zone)
        tz, zone = ZoneInfo("UTC"), "UTC"
    return value.astimezone(tz), zone


def _is_web_url(url: str | None) -> bool:
    if not url or _CONTROLS.search(url) or _WHITESPACE.search(url):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _nl2br(value: str) -> Markup:
    return Markup("<br>\n").join(escape(line) for line in str(value).split("\n"))
