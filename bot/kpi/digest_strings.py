"""French and English words of the weekly digest, and the formatting of its figures."""

from __future__ import annotations

STRINGS: dict[str, dict] = {
    "fr": {
        "subject": "[Relais] Bilan de la semaine {week} : {sla} dans les délais, 1re réponse en {median}",
        "title": "Bilan de la semaine",
        "intro": "Éléments publiés du {start} au {end} ({tz}), et ce qu'il en est advenu au {as_of}.",
        "headline": "En bref",
        "vs_previous": "vs semaine précédente",
        "received": "Messages reçus",
        "response_rate": "Taux de réponse",
        "first_response_median": "1re réponse, médiane",
        "first_response_p90": "1re réponse, 90e centile",
        "sla_compliance": "Dans les délais (SLA)",
        "backlog": "En attente",
        "overdue": "en retard",
        "correction_rate": "Corrections du modèle",
        "chart_distribution": "Délai de première réponse",
        "chart_sla": "Respect des délais par catégorie",
        "chart_volumes": "Volumes par catégorie et plateforme",
        "sla_by_category": "Délais par catégorie",
        "category": "Catégorie",
        "received_short": "Reçus",
        "answered_short": "Répondus",
        "median": "Médiane",
        "p90": "90e c.",
        "sla_short": "SLA",
        "breaches": "Délais dépassés",
        "no_breach": "Aucun délai dépassé.",
        "unanswered": "Plaintes publiques sans réponse depuis plus de 24 h",
        "no_unanswered": "Aucune.",
        "expert": "Expert",
        "team": "Équipe",
        "experts": "Par expert",
        "teams": "Par équipe",
        "team_section": "Équipe {name}",
        "open": "Ouverts",
        "due": "échéance",
        "answered_at": "répondu",
        "not_answered": "sans réponse",
        "open_item": "ouvrir",
        "business": "en heures ouvrées",
        "unassigned": "Non assigné",
        "no_team": "Sans équipe",
        "footer": "Envoyé par Relais. Définitions : docs/kpis.md.",
        "categories": {"complaint": "Plainte", "product_feedback": "Avis produit", "ad_reaction": "Réaction pub",
                       "other": "Autre", "none": "Sans étiquette"},
    },
    "en": {
        "subject": "[Relais] Week {week} digest: {sla} within SLA, first response in {median}",
        "title": "Weekly digest",
        "intro": "Items posted from {start} to {end} ({tz}), and what became of them by {as_of}.",
        "headline": "At a glance",
        "vs_previous": "vs previous week",
        "received": "Items received",
        "response_rate": "Response rate",
        "first_response_median": "First response, median",
        "first_response_p90": "First response, 90th percentile",
        "sla_compliance": "Within SLA",
        "backlog": "Waiting",
        "overdue": "overdue",
        "correction_rate": "Model corrections",
        "chart_distribution": "First response time",
        "chart_sla": "SLA compliance by category",
        "chart_volumes": "Volumes by category and platform",
        "sla_by_category": "SLA by category",
        "category": "Category",
        "received_short": "Received",
        "answered_short": "Answered",
        "median": "Median",
        "p90": "p90",
        "sla_short": "SLA",
        "breaches": "SLA breaches",
        "no_breach": "No breach.",
        "unanswered": "Public complaints unanswered after 24 h",
        "no_unanswered": "None.",
        "expert": "Expert",
        "team": "Team",
        "experts": "By expert",
        "teams": "By team",
        "team_section": "Team {name}",
        "open": "Open",
        "due": "due",
        "answered_at": "answered",
        "not_answered": "not answered",
        "open_item": "open",
        "business": "in business hours",
        "unassigned": "Unassigned",
        "no_team": "No team",
        "footer": "Sent by Relais. Definitions: docs/kpis.md.",
        "categories": {"complaint": "Complaint", "product_feedback": "Product feedback", "ad_reaction": "Ad reaction",
                       "other": "Other", "none": "Unlabelled"},
    },
}


def duration(seconds: float | None, language: str) -> str:
    """3725 -> "1 h 02" (fr) / "1h 02m" (en); None -> "-"."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 48 * 3600:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m:02d}" if language == "fr" else f"{h}h {m:02d}m"
    days = s / 86400
    return f"{days:.1f} j".replace(".", ",") if language == "fr" else f"{days:.1f} d"


def change(current: float | None, previous: float | None, kind: str, language: str) -> str:
    """Week-over-week change: counts and durations in %, rates in points. Empty without both weeks."""
    if current is None or previous is None:
        return ""
    if kind == "rate":
        points = (current - previous) * 100
        text = f"{points:+.0f} pt" + ("s" if abs(round(points)) > 1 and language == "en" else "")
    else:
        if not previous:
            return ""
        text = f"{(current - previous) / previous * 100:+.0f} %"
        if language == "en":
            text = text.replace(" %", "%")
    return text.replace("-", "−")
