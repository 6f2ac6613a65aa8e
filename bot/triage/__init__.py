"""Triage: the community manager's queue and the actions on items (no web code)."""
