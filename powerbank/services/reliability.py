"""Chargers that repeatedly accept a limit but do not deliver it: the rule, and one read for a whole list.

The rule: a charger is flagged when, of its last ``RECENT`` activations in which its delivery could
be judged, at least ``FLAG_AT`` were "accepted but not delivered". Its delivery could be judged when
the activation's evidence is kept (``delivery_verdict``, stored by services/delivery.py's
``keep_evidence``) and its verdict is delivered, partial or accepted but not delivered: an activation
it was offline for, refused, had nothing to reduce in or sent no meter data for says nothing about
whether it keeps its word, so it neither counts for nor against it, and does not push older ones out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as core_select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.i18n import gettext as _
from powerbank.models import DeliveryVerdict
from powerbank.services.delivery import Verdict

# The last this many judged activations of a charger are looked at...
RECENT = 3
# ...and it is flagged when at least this many of them were accepted but not delivered.
FLAG_AT = 2
# The verdicts that say whether a charger did what it accepted to do.
JUDGED = (Verdict.DELIVERED, Verdict.PARTIAL, Verdict.NOT_DELIVERED)


@dataclass(frozen=True)
class JudgedActivation:
    """One activation of a charger and its verdict in it."""

    activation_id: int
    triggered_at: datetime
    verdict: Verdict

    @property
    def not_delivered(self) -> bool:
        return self.verdict is Verdict.NOT_DELIVERED


@dataclass(frozen=True)
class Reliability:
    """A charger's recent judged activations (newest first, at most RECENT) and what the rule says of them."""

    charge_point_id: int
    recent: list[JudgedActivation] = field(default_factory=list)

    @property
    def not_delivered(self) -> list[JudgedActivation]:
        return [judged for judged in self.recent if judged.not_delivered]

    @property
    def flagged(self) -> bool:
        """Return True when the charger repeatedly accepted but did not deliver (the rule above)."""
        return len(self.not_delivered) >= FLAG_AT

    @property
    def summary(self) -> str:
        """Return the numbers behind the flag: "accepted but not delivered in 2 of its last 3 activations"."""
        judged = len(self.recent)
        if not judged:
            return _("no activation it accepted could be judged from its meters yet")
        if judged == 1:
            return _("its last activation: %(verdict)s", verdict=_(str(self.recent[0].verdict)))
        return _(
            "%(verdict)s in %(count)s of its last %(judged)s activations",
            verdict=_(str(Verdict.NOT_DELIVERED)),
            count=len(self.not_delivered),
            judged=judged,
        )

    @property
    def sentence(self) -> str:
        """Return the summary as a sentence starts: "Accepted but not delivered in 2 of its last 3 activations"."""
        return self.summary[:1].upper() + self.summary[1:]


async def reliability_of(session: AsyncSession, charge_point_ids: Sequence[int]) -> dict[int, Reliability]:
    """Return each charge point's reliability, by id (one query, whatever the number of charge points)."""
    ids = sorted(set(charge_point_ids))
    found = {cp_id: Reliability(cp_id) for cp_id in ids}
    if not ids:
        return found
    newest_first = func.row_number().over(
        partition_by=col(DeliveryVerdict.charge_point_id),
        order_by=(col(DeliveryVerdict.triggered_at).desc(), col(DeliveryVerdict.activation_id).desc()),
    )
    ranked = (
        core_select(
            col(DeliveryVerdict.charge_point_id),
            col(DeliveryVerdict.activation_id),
            col(DeliveryVerdict.triggered_at),
            col(DeliveryVerdict.verdict),
            newest_first.label("rank"),
        )
        .where(
            col(DeliveryVerdict.charge_point_id).in_(ids),
            col(DeliveryVerdict.verdict).in_([str(verdict) for verdict in JUDGED]),
        )
        .subquery()
    )
    # Plain SQLAlchemy: sqlmodel's select() is typed for at most four columns.
    newest: Any = (
        core_select(ranked.c.charge_point_id, ranked.c.activation_id, ranked.c.triggered_at, ranked.c.verdict)
        .where(ranked.c.rank <= RECENT)
        .order_by(ranked.c.charge_point_id, ranked.c.rank)
    )
    for cp_id, activation_id, triggered_at, verdict in await session.exec(newest):
        found[cp_id].recent.append(JudgedActivation(activation_id, triggered_at, Verdict(verdict)))
    return found


async def reliability_of_one(session: AsyncSession, charge_point_id: int) -> Reliability:
    """Return one charge point's reliability."""
    return (await reliability_of(session, [charge_point_id]))[charge_point_id]
