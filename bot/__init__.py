"""Relais: route social customer-care posts to the expert best placed to answer."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

#: The checkout (or installed tree) that holds templates/ and routing_rules.yaml.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
