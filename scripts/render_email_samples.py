"""Render sample expert emails into docs/emails/ (HTML, plain text and, with Chromium, PNG).

    .venv/bin/python scripts/render_email_samples.py

The sample post carries hostile text on purpose (a script tag, an RTL override)
to show it rendered as text.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bot import PROJECT_ROOT
from bot.notify.compose import NotificationView, compose_notification, draft_reply, make_environment

OUT = PROJECT_ROOT / "docs" / "emails"


def sample(language: str) -> NotificationView:
    env = make_environment(PROJECT_ROOT / "templates")
    french = language == "fr"
    return NotificationView(
        item_id=1042,
        platform="facebook",
        page_name="Boulangerie Dorée",
        kind="comment",
        author_name="Julie Bouchard",
        author_handle="",
        author_followers=1234,
        text=(
            "J'ai acheté la Forêt-Noire hier à la succursale de Laval et le gâteau était sec et rassis 😡 "
            "45 $ pour ça <script>alert('pas correct')</script>. On m'a dit d'appeler la boutique mais personne ne répond."
            if french
            else "Bought the Black Forest cake yesterday at the Laval store and it was dry and stale 😡 "
            "$45 for that <script>alert('not ok')</script>. They told me to call the store but nobody answers."
        ),
        created_time=datetime(2026, 12, 3, 17, 51, tzinfo=UTC),
        permalink="https://www.facebook.com/101796320240_1796320240000",
        parent_text="PROMO ! -20 % sur tous les croissants ce week-end 🥐",
        parent_is_ad=True,
        category="complaint",
        confidence=0.87,
        explanation=("« rassis »", "« sec »", "negative emoji") if french else ("“stale”", "“dry”", "negative emoji"),
        rule_name="Plaintes qualité",
        reply_mode="private_with_public_ack",
        priority="high",
        sla_due=datetime(2026, 12, 3, 19, 51, tzinfo=UTC),
        expert_name="Chloé Tremblay" if french else "Sarah Collins",
        expert_timezone="America/Montreal" if french else "America/Toronto",
        suggested_reply=draft_reply(env, "complaint", language, author_name="Julie", page_name="Boulangerie Dorée"),
        reply_url="http://127.0.0.1:8080/reply/EXAMPLE.TOKEN",
        language=language,
    )


def main() -> None:
    env = make_environment(PROJECT_ROOT / "templates")
    OUT.mkdir(parents=True, exist_ok=True)
    written = []
    for language in ("fr", "en"):
        for kind in ("new", "reminder", "escalation"):
            mail = compose_notification(env, replace(sample(language), kind_of_mail=kind))
            name = {"new": "notification"}.get(kind, kind)
            (OUT / f"{name}.{language}.html").write_text(mail.html, encoding="utf-8")
            (OUT / f"{name}.{language}.txt").write_text(f"Subject: {mail.subject}\n\n{mail.text}", encoding="utf-8")
            written.append(f"{name}.{language}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        with tempfile.TemporaryDirectory() as profile:
            for language in ("fr", "en"):
                subprocess.run(
                    [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={profile}", "--window-size=760,1900", "--hide-scrollbars",
                     f"--screenshot={OUT / f'notification.{language}.png'}",
                     (OUT / f"notification.{language}.html").as_uri()],
                    check=True, capture_output=True, timeout=60,
                )
    print(f"wrote {len(written)} samples to {OUT}" + (" (+ PNG)" if chromium else " (no chromium: no PNG)"))


if __name__ == "__main__":
    main()
