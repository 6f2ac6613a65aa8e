"""The roles of the web UI (no imports: the command-line parser uses them too).

- ``community_manager``: the triage queue and every action on items, dead letters;
- ``expert``: the items assigned to them;
- ``manager``: read-only dashboards;
- ``admin``: everything, including administration pages.
"""

from __future__ import annotations

ROLES = ("community_manager", "expert", "manager", "admin")
LANGUAGES = ("fr", "en")
