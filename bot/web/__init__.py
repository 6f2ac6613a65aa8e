"""The web side: reply pages for experts, health, and (later) the triage UI."""
