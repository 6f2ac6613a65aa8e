"""Strings of the logged-in web UI, in French (the default) and English.

``translator(language)`` gives the ``t("key", **values)`` function the templates
use. Lookup order: the language asked for, then French, then the key itself (a
missing string shows as its key rather than breaking the page). Other modules
add their strings with :func:`register` at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bot.web.i18n import STRINGS as REPLY_STRINGS

LANGUAGES = ("fr", "en")

UI_STRINGS: dict[str, dict[str, str]] = {
    "fr": {
        "skip_to_content": "Aller au contenu",
        "nav_label": "Navigation principale",
        "nav_queue": "File",
        "nav_dashboard": "Tableau de bord",
        "nav_dead_letters": "Tâches en échec",
        "logout": "Se déconnecter",
        "signed_in_as": "Connecté·e : {name} ({role})",
        "role_community_manager": "community manager",
        "role_expert": "expert·e",
        "role_manager": "responsable",
        "role_admin": "administrateur·rice",
        "login_title": "Connexion",
        "login_intro": "Connectez-vous pour trier les messages.",
        "email": "Adresse e-mail",
        "password": "Mot de passe",
        "login_button": "Se connecter",
        "login_failed": "Adresse e-mail ou mot de passe incorrect.",
        "login_throttled": "Trop de tentatives de connexion. Réessayez dans {minutes} min (à {at} UTC).",
        "login_expired_form": "Le formulaire de connexion a expiré. Il a été rechargé : saisissez à nouveau vos identifiants.",
        "logged_out": "Vous êtes déconnecté·e.",
        "session_expired": "Votre session a expiré : reconnectez-vous.",
        "forbidden_title": "Accès refusé",
        "forbidden_body": "Votre rôle ne permet pas d’ouvrir cette page ou de faire cette action.",
        "csrf_title": "Requête refusée",
        "csrf_body": "Le jeton de sécurité (CSRF) manque ou ne correspond pas. Rechargez la page, puis recommencez.",
        "back_home": "Retour à la file",
    },
    "en": {
        "skip_to_content": "Skip to content",
        "nav_label": "Main navigation",
        "nav_queue": "Queue",
        "nav_dashboard": "Dashboard",
        "nav_dead_letters": "Dead letters",
        "logout": "Log out",
        "signed_in_as": "Signed in: {name} ({role})",
        "role_community_manager": "community manager",
        "role_expert": "expert",
        "role_manager": "manager",
        "role_admin": "admin",
        "login_title": "Log in",
        "login_intro": "Log in to triage the messages.",
        "email": "Email address",
        "password": "Password",
        "login_button": "Log in",
        "login_failed": "Wrong email address or password.",
        "login_throttled": "Too many login attempts. Try again in {minutes} min (at {at} UTC).",
        "login_expired_form": "The login form had expired. It has been reloaded: enter your email and password again.",
        "logged_out": "You are logged out.",
        "session_expired": "Your session has expired: log in again.",
        "forbidden_title": "Access denied",
        "forbidden_body": "Your role does not allow this page or this action.",
        "csrf_title": "Request refused",
        "csrf_body": "The security (CSRF) token is missing or does not match. Reload the page, then try again.",
        "back_home": "Back to the queue",
    },
}


def register(catalog: Mapping[str, Mapping[str, str]]) -> None:
    """Add strings (``{"fr": {...}, "en": {...}}``); a key registered twice keeps the last text."""
    for language, strings in catalog.items():
        UI_STRINGS.setdefault(language, {}).update(strings)


def translator(language: str | None) -> Callable[..., str]:
    language = language if language in LANGUAGES else "fr"
    chain = (UI_STRINGS[language], REPLY_STRINGS[language], UI_STRINGS["fr"], REPLY_STRINGS["fr"])

    def t(key: str, **values: object) -> str:
        for table in chain:
            if key in table:
                text = table[key]
                return text.format(**values) if values else text
        return key

    return t
