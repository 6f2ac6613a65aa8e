"""Composition of the expert notification: languages, time zones, hostile text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from html.parser import HTMLParser

import jinja2
import pytest

from bot.notify.compose import (
    NotificationView,
    compose_notification,
    draft_reply,
    format_localtime,
    format_percent,
    sanitize_for_display,
)

ViewFactory = Callable[..., NotificationView]
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
ALLOWED_TAGS = {"html", "head", "meta", "title", "body", "div", "table", "tr", "td", "p",
                "h1", "h2", "strong", "span", "a", "blockquote", "br"}


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


def _tags(html: str) -> _TagCollector:
    collector = _TagCollector()
    collector.feed(html)
    return collector


def test_french_subject_and_time_in_the_experts_zone(env: jinja2.Environment,
                                                     make_view: ViewFactory) -> None:
    mail = compose_notification(env, make_view())

    assert mail.subject == "[Relais] Plainte · Boulangerie Dorée · réponse attendue avant 14 h 05"
    due = "jeudi 3 décembre 2026 à 14 h 05 (America/Montreal)"
    assert due in mail.text and due in mail.html
    assert "1 234 abonnés" in mail.text and "1 234 abonnés" in mail.html
    assert "confiance\u00a0: 87 %" in mail.text
    assert "plaintes-boulangerie" in mail.text
    assert "message privé" in mail.text  # the reply mode, in plain words
    assert '<html lang="fr">' in mail.html


def test_english_subject_in_summer_time(env: jinja2.Environment, make_view: ViewFactory) -> None:
    view = make_view(language="en", sla_due=datetime(2026, 7, 1, 18, 5, tzinfo=timezone.utc))

    mail = compose_notification(env, view)

    # July: Montreal is UTC-4 (EDT), so 18:05 UTC is 2:05 PM, as 19:05 UTC is in December.
    assert mail.subject == "[Relais] Complaint · Boulangerie Dorée · reply due by 2:05 PM"
    assert "Wednesday 1 July 2026, 2:05 PM (America/Montreal)" in mail.text
    assert "1,234 followers" in mail.text and "(confidence: 87%)" in mail.text
    assert "Reply in one click" in mail.html


@pytest.mark.parametrize(("utc", "zone", "language", "expected"), [
    # America/Montreal springs forward on 8 March 2026 at 2:00.
    (datetime(2026, 3, 8, 6, 30, tzinfo=timezone.utc), "America/Montreal", "fr",
     "dimanche 8 mars 2026 à 1 h 30 (America/Montreal)"),
    (datetime(2026, 3, 8, 7, 30, tzinfo=timezone.utc), "America/Montreal", "fr",
     "dimanche 8 mars 2026 à 3 h 30 (America/Montreal)"),
    # Europe/Paris falls back on 25 October 2026 at 3:00.
    (datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc), "Europe/Paris", "en",
     "Sunday 25 October 2026, 2:30 AM (Europe/Paris)"),
    (datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc), "Europe/Paris", "en",
     "Sunday 25 October 2026, 2:30 AM (Europe/Paris)"),
    (datetime(2026, 5, 1, 4, 0, tzinfo=timezone.utc), "America/Montreal", "fr",
     "vendredi 1er mai 2026 à 0 h 00 (America/Montreal)"),
    (datetime(2026, 5, 1, 16, 0, tzinfo=timezone.utc), "America/Montreal", "en",
     "Friday 1 May 2026, 12:00 PM (America/Montreal)"),
    (datetime(2026, 5, 1, 16, 0, tzinfo=timezone.utc), "Mars/Olympus", "en",
     "Friday 1 May 2026, 4:00 PM (UTC)"),
])
def test_localtime(utc: datetime, zone: str, language: str, expected: str) -> None:
    assert format_localtime(utc, zone, language) == expected


def test_localtime_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError):
        format_localtime(datetime(2026, 5, 1, 16, 0), "UTC", "fr")


def test_percent() -> None:
    assert format_percent(0.873, "fr") == "87 %"
    assert format_percent(0.873, "en") == "87%"
    assert format_percent(1.7, "en") == "100%"


def test_hostile_text_is_escaped_in_html_and_intact_in_text(env: jinja2.Environment,
                                                             make_view: ViewFactory) -> None:
    hostile = 'Hello <script>alert(1)</script> <img src=x onerror=alert(1)> &amp;lt; "quoted"'
    view = make_view(text=hostile, author_name=hostile, parent_text=hostile, page_name=hostile,
                     explanation=(hostile,), rule_name=hostile, suggested_reply=hostile)

    mail = compose_notification(env, view)

    parsed = _tags(mail.html)
    assert parsed.tags <= ALLOWED_TAGS
    assert not any(name.startswith("on") for name in parsed.attributes)
    assert "<script" not in mail.html and "<img" not in mail.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in mail.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in mail.html
    assert "&amp;amp;lt;" in mail.html  # shown as typed, not decoded into "&lt;"
    assert hostile in mail.text


def test_bidi_overrides_are_made_visible(env: jinja2.Environment, make_view: ViewFactory) -> None:
    view = make_view(text="Remboursez-moi \u202egnp.exe\u202c svp", author_name="\u2066Eve\u2069",
                     page_name="Page\u202e")

    mail = compose_notification(env, view)

    for part in (mail.subject, mail.text, mail.html):
        assert not any(char in part for char in BIDI_CONTROLS)
    assert "Remboursez-moi [U+202E]gnp.exe[U+202C] svp" in mail.text
    assert "[U+2066]Eve[U+2069]" in mail.html
    assert sanitize_for_display("a\u202eb") == "a[U+202E]b"


def test_emoji_and_line_breaks_survive(env: jinja2.Environment, make_view: ViewFactory) -> None:
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    mail = compose_notification(env, make_view(text=f"Merci 🥐🎉 {family}\r\nDeuxième ligne"))

    assert f"Merci 🥐🎉 {family}\nDeuxième ligne" in mail.text
    assert f"Merci 🥐🎉 {family}<br>\nDeuxième ligne" in mail.html


def test_a_long_post_is_never_truncated(env: jinja2.Environment, make_view: ViewFactory) -> None:
    words = " ".join(f"mot{n}" for n in range(2000))
    post = (words + " fin.")[:9_990] + " FIN-XYZ"
    assert len(post) >= 9_998

    mail = compose_notification(env, make_view(text=post))

    assert post in mail.text
    assert post in mail.html


@pytest.mark.parametrize(("language", "badge"), [("fr", "Publicité / promotion"),
                                                 ("en", "Ad / promotion")])
def test_the_ad_badge_shows_when_the_parent_is_an_ad(env: jinja2.Environment,
                                                    make_view: ViewFactory,
                                                    language: str, badge: str) -> None:
    with_ad = compose_notification(env, make_view(language=language, parent_is_ad=True))
    without = compose_notification(env, make_view(language=language, parent_is_ad=False))

    assert badge in with_ad.html and badge in with_ad.text
    assert badge not in without.html and badge not in without.text
    assert "Nouvelle galette des rois" in with_ad.text


def test_links_reply_url_and_permalink(env: jinja2.Environment, make_view: ViewFactory) -> None:
    mail = compose_notification(env, make_view())

    assert 'href="https://relais.example/reply/42?t=abc"' in mail.html
    assert "https://relais.example/reply/42?t=abc" in mail.text
    assert 'href="https://www.facebook.com/123_456"' in mail.html
    assert "https://www.facebook.com/123_456" in mail.text

    unsafe = compose_notification(env, make_view(permalink="javascript:alert(1)"))
    assert "javascript:" not in unsafe.html and "javascript:" not in unsafe.text

    with pytest.raises(ValueError):
        compose_notification(env, make_view(reply_url="javascript:alert(1)"))


def test_reminder_and_escalation_change_only_the_headline(env: jinja2.Environment,
                                                         make_view: ViewFactory) -> None:
    new = compose_notification(env, make_view())
    reminder = compose_notification(env, make_view(kind_of_mail="reminder"))
    escalation = compose_notification(env, make_view(kind_of_mail="escalation", language="en"))

    assert "Rappel : ce message attend toujours votre réponse" in reminder.text
    assert "Escalation: this message was not answered in time" in escalation.html
    assert reminder.subject.startswith("[Relais] Rappel · Plainte")
    assert reminder.html.split("</h1>")[1] == new.html.split("</h1>")[1]
    assert reminder.text.split("\n", 2)[2] == new.text.split("\n", 2)[2].replace(
        "=" * len("Un message attend votre réponse"),
        "=" * len("Rappel : ce message attend toujours votre réponse"), 1)


def test_subject_cannot_carry_headers_and_stays_short(env: jinja2.Environment,
                                                      make_view: ViewFactory) -> None:
    view = make_view(page_name="Boulangerie\r\nBcc: victim@example.com\u2028X" + "é" * 300,
                     category="weird\ncategory")

    subject = compose_notification(env, view).subject

    assert "\r" not in subject and "\n" not in subject and "\u2028" not in subject
    assert len(subject) <= 160
    assert subject.startswith("[Relais] weird category · Boulangerie Bcc: victim@example.com X")


def test_draft_reply_in_both_languages(env: jinja2.Environment) -> None:
    fr = draft_reply(env, "complaint", "fr", author_name="Marie", page_name="Boulangerie Dorée")
    en = draft_reply(env, "product_feedback", "en", author_name="", page_name="Golden Bakery")

    assert fr.startswith("Bonjour Marie,") and "numéro de commande" in fr
    assert fr.endswith("L’équipe Boulangerie Dorée")
    assert en.startswith("Hello,") and "product team" in en
    assert "Golden Bakery" in draft_reply(env, "ad_reaction", "en", page_name="Golden Bakery")


def test_draft_reply_falls_back(env: jinja2.Environment) -> None:
    unknown_category = draft_reply(env, "weather", "fr", author_name="Luc")
    unknown_language = draft_reply(env, "complaint", "de", author_name="Lena")
    path_trick = draft_reply(env, "../../etc/passwd", "fr")

    assert unknown_category.startswith("Bonjour Luc, merci pour votre message")
    assert unknown_language.startswith("Hello Lena,") and "order number" in unknown_language
    assert path_trick.startswith("Bonjour, merci pour votre message")
    assert draft_reply(env, "other", "fr", author_name="Eve\r\nBcc: x").startswith(
        "Bonjour Eve Bcc: x,")
