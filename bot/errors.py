"""The Relais error tree.

    RelaisError
     +-- ConfigError            a setting is missing or wrong; names the setting
     +-- RulesError             routing_rules.yaml is invalid; file:line:column: message
     +-- ChannelError           a platform call failed (raised by channel adapters only)
     |    +-- RateLimited       wait ``retry_after`` seconds, then retry
     |    +-- Transient         5xx, timeouts, connection errors: retry with backoff
     |    +-- TokenInvalid      the credentials are dead: the channel stops (status token_invalid)
     |    +-- ReplyRejected     the platform refused this reply (window closed, too long...)
     +-- InvalidDelivery        a webhook body that cannot be understood

Adapters convert SDK and HTTP errors into these with ``raise ... from exc``;
HTTP status codes are chosen only in web handlers.
"""

from __future__ import annotations


class RelaisError(Exception):
    """Base of every error Relais raises on purpose."""


class ConfigError(RelaisError):
    """A setting is missing or invalid. The message names the setting."""


class RulesError(RelaisError):
    """The routing rules file is invalid."""


class ChannelError(RelaisError):
    """A platform call failed."""


class RateLimited(ChannelError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Transient(ChannelError):
    """Worth retrying later with backoff."""


class TokenInvalid(ChannelError):
    """The channel's credentials no longer work; retrying will not help."""


class ReplyRejected(ChannelError):
    """The platform refused this particular reply; the message says what to do.

    ``reason`` lets the reply page explain it in the expert's language:
    ``private_window`` (the private-reply window is closed, or this comment already
    got its private reply), ``too_long``, ``not_allowed`` (permission, blocked
    user, deleted object), ``other``.
    """

    REASONS = ("private_window", "too_long", "not_allowed", "other")

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason if reason in self.REASONS else "other"


class InvalidDelivery(RelaisError):
    """A webhook delivery whose content cannot be understood."""
