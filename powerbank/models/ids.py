"""How the tables hand out ids: never the same one twice."""

from __future__ import annotations

from typing import Any

# The ``__table_args__`` (or their last item) of every table with an id the database hands out.
# Without AUTOINCREMENT SQLite hands out max(id) + 1, so a deleted newest row's id comes back for the
# next one, and whatever still names it (history, terms acceptances, a bookmarked URL) names the new,
# perhaps another tenant's, row. PostgreSQL's sequences never repeat a number.
NEVER_REUSE_IDS: dict[str, Any] = {"sqlite_autoincrement": True}
