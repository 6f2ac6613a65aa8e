"""Plain value types shared by training, evaluation and prediction."""

from __future__ import annotations

from dataclasses import dataclass, field

LABELS: tuple[str, ...] = ("complaint", "product_feedback", "ad_reaction", "other")


@dataclass(frozen=True, slots=True)
class Context:
    """Where an item was seen.

    platform: facebook|x|instagram; kind: post|comment|mention|message.
    """

    platform: str = ""
    kind: str = ""
    parent_is_ad: bool = False


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: str
    language: str = ""
    context: Context = field(default_factory=Context)


@dataclass(frozen=True, slots=True)
class Prediction:
    """One classification: `explanation` holds up to 5 short cues that pushed toward `label`."""

    label: str
    confidence: float
    language: str
    explanation: tuple[str, ...]
    model_version: str
