"""The compatibility catalogue (R2): which brands and models can take part in PowerBank.

Every edit re-evaluates the operator's charge points at once (suspension, DK2 sign-up), whoever makes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.errors import ConflictError, NotFoundError
from powerbank.i18n import N_
from powerbank.i18n import gettext as _
from powerbank.models import ChargePoint, CompatibleModel, Operator, Team
from powerbank.rules.eligibility import CatalogueKey, catalogue_key
from powerbank.rules.permissions import Permission, Principal
from powerbank.rules.validators import clean_name
from powerbank.services.access import Acting, actor_of, require_on_operator
from powerbank.services.audit import record
from powerbank.services.enrollment import reevaluate_operator

# Smart-charging capable AC chargers (OCPP 1.6J or 2.0.1 with charging profiles), shipped as
# every new operator's starting catalogue; operator admins add and remove entries.
SHIPPED_CATALOGUE: tuple[tuple[str, str], ...] = (
    ("ABB", "Terra AC"),
    ("Alfen", "Eve Single Pro-line"),
    ("Alfen", "Eve Double Pro-line"),
    ("Autel", "MaxiCharger AC Elite"),
    ("Charge Amps", "Aura"),
    ("Charge Amps", "Halo"),
    ("Circontrol", "eNext Park"),
    ("Easee", "Charge"),
    ("Easee", "Home"),
    ("Ensto", "Chago Pro"),
    ("Etrel", "INCH"),
    ("EVBox", "BusinessLine"),
    ("EVBox", "Elvi"),
    ("Garo", "GLB+"),
    ("Garo", "Twin"),
    ("KEBA", "KeContact P30"),
    ("Mennekes", "Amtron Professional"),
    ("Schneider Electric", "EVlink Pro AC"),
    ("Wallbox", "Commander 2"),
    ("Wallbox", "Pulsar Plus"),
    ("Webasto", "Next"),
    ("Zaptec", "Go"),
    ("Zaptec", "Pro"),
)


# What a catalogued brand/model needs besides its name to take part (the same for every entry, as the
# catalogue holds only brands and models): the OCPP versions the hub speaks (ocpp/endpoint), smart
# charging (R2 refuses a charger that reports none) and either rate unit (the fan-out sends W to a
# charger that takes power limits, else A). Each is (label, short value, explanation).
# Marked for translation here, shown translated by the pages (``_(label)``).
ENTRY_NEEDS: tuple[tuple[str, str, str], ...] = (
    ("OCPP", N_("1.6J or 2.0.1"), N_("The charger connects to PowerBank over OCPP-J 1.6 or 2.0.1.")),
    (
        N_("Smart charging"),
        N_("Required"),
        N_(
            "The charger takes charging profiles (OCPP 1.6 Smart Charging, 2.0.1 SmartChargingCtrlr); "
            "one that reports no smart charging support is not compatible, whatever its model."
        ),
    ),
    (
        N_("Rate units"),
        N_("A or W"),
        N_("Either works: PowerBank sends limits in W to a charger that takes power limits, otherwise in A."),
    ),
)
# A search is a few words; anything longer is cut rather than refused (it can only match less).
MAX_SEARCH_LENGTH = 100


@dataclass(frozen=True)
class EntryMatch:
    """A catalogue entry with how many of the user's charge points are of its brand and model."""

    entry: CompatibleModel
    charge_points: int = 0
    # Of those, how many report no smart charging support (so they are not compatible after all).
    without_smart_charging: int = 0


@dataclass
class OperatorCompatibility:
    """One operator's catalogue as one user sees it, narrowed by a search."""

    operator: Operator
    entries: list[EntryMatch] = field(default_factory=list)
    catalogue_size: int = 0
    # The user's charge points of this operator (in the teams they see), and how many are catalogued.
    charge_points: int = 0
    catalogued: int = 0


def search_terms(search: str | None) -> list[str]:
    """Return the words of a catalogue search, matched without regard to case or spacing."""
    return " ".join((search or "")[:MAX_SEARCH_LENGTH].split()).casefold().split()


def _found(entry: CompatibleModel, terms: list[str]) -> bool:
    text = f"{entry.brand_key} {entry.model_key}"
    return all(term in text for term in terms)


async def compatibility_for(
    session: AsyncSession, principal: Principal, operator_ids: Iterable[int], search: str | None = None
) -> list[OperatorCompatibility]:
    """Return the catalogues of operators the caller sees, each entry with the caller's matching charge points.

    Only entries whose brand and model hold every word of ``search`` are listed. A charge point counts
    for an entry when what counts for R2 (the reported vendor and model once it has booted) is that
    entry; only charge points of teams the caller sees are counted. Three queries, whatever the sizes.
    """
    wanted = set(operator_ids) & principal.visible_operator_ids
    if not wanted:
        return []
    operators = await session.exec(select(Operator).where(col(Operator.id).in_(wanted)))
    result = {operator.id or 0: OperatorCompatibility(operator) for operator in operators}
    entries = await session.exec(
        select(CompatibleModel)
        .where(col(CompatibleModel.operator_id).in_(result))
        .order_by(col(CompatibleModel.brand_key), col(CompatibleModel.model_key))
    )
    catalogues: dict[int, list[CompatibleModel]] = {operator_id: [] for operator_id in result}
    for entry in entries:
        catalogues[entry.operator_id].append(entry)
    counts, without_smart = await _charge_points_by_key(session, principal, list(result))
    terms = search_terms(search)
    for operator_id, compatibility in result.items():
        keys = {(entry.brand_key, entry.model_key) for entry in catalogues[operator_id]}
        compatibility.catalogue_size = len(keys)
        compatibility.charge_points = sum(count for (owner, _), count in counts.items() if owner == operator_id)
        compatibility.catalogued = sum(
            count for (owner, key), count in counts.items() if owner == operator_id and key in keys
        )
        compatibility.entries = [
            EntryMatch(
                entry,
                counts[(operator_id, (entry.brand_key, entry.model_key))],
                without_smart[(operator_id, (entry.brand_key, entry.model_key))],
            )
            for entry in catalogues[operator_id]
            if _found(entry, terms)
        ]
    return sorted(result.values(), key=lambda item: item.operator.name.casefold())


async def _charge_points_by_key(
    session: AsyncSession, principal: Principal, operator_ids: list[int]
) -> tuple[Counter[tuple[int, CatalogueKey]], Counter[tuple[int, CatalogueKey]]]:
    """Count the caller's charge points of these operators by (operator, brand/model key) (one query)."""
    operator_wide = [operator_id for operator_id in operator_ids if operator_id in principal.operator_roles]
    team_ids = [team_id for team_id, operator_id in principal.team_operators.items() if operator_id in operator_ids]
    counts: Counter[tuple[int, CatalogueKey]] = Counter()
    without_smart: Counter[tuple[int, CatalogueKey]] = Counter()
    if not operator_wide and not team_ids:
        return counts, without_smart
    rows = await session.exec(
        select(ChargePoint, Team.operator_id)
        .join(Team, col(Team.id) == col(ChargePoint.team_id))
        .where(col(Team.operator_id).in_(operator_wide) | col(Team.id).in_(team_ids))
    )
    for charge_point, operator_id in rows:
        key = (operator_id, catalogue_key(charge_point.effective_brand, charge_point.effective_model))
        counts[key] += 1
        if charge_point.smart_charging is False:
            without_smart[key] += 1
    return counts, without_smart


async def list_catalogue(session: AsyncSession, operator_id: int) -> list[CompatibleModel]:
    """Return an operator's catalogue, sorted by brand and model."""
    rows = await session.exec(
        select(CompatibleModel)
        .where(CompatibleModel.operator_id == operator_id)
        .order_by(col(CompatibleModel.brand_key), col(CompatibleModel.model_key))
    )
    return list(rows)


def seed_catalogue(session: AsyncSession, operator_id: int) -> None:
    """Give a new operator the shipped catalogue."""
    for brand, model in SHIPPED_CATALOGUE:
        brand_key, model_key = catalogue_key(brand, model)
        session.add(
            CompatibleModel(operator_id=operator_id, brand=brand, model=model, brand_key=brand_key, model_key=model_key)
        )


async def add_model(
    session: AsyncSession, by: Acting, operator_id: int, brand: str | None, model: str | None
) -> CompatibleModel:
    """Add a brand/model to an operator's catalogue."""
    require_on_operator(by, Permission.EDIT_CATALOGUE, operator_id)
    clean_brand = clean_name(brand, label="Brand", max_length=80)
    clean_model = clean_name(model, label="Model", max_length=80)
    brand_key, model_key = catalogue_key(clean_brand, clean_model)
    if await _is_catalogued(session, operator_id, brand_key, model_key):
        raise ConflictError(_("%(brand)s %(model)s is already in the catalogue.", brand=clean_brand, model=clean_model))
    entry = CompatibleModel(
        operator_id=operator_id, brand=clean_brand, model=clean_model, brand_key=brand_key, model_key=model_key
    )
    session.add(entry)
    await session.flush()
    record(
        session,
        actor_of(by),
        "catalogue.add",
        entry,
        operator_id=operator_id,
        label=f"{clean_brand} {clean_model}",
        after={"brand": clean_brand, "model": clean_model},
    )
    await reevaluate_operator(session, operator_id)
    return entry


async def remove_model(session: AsyncSession, by: Acting, operator_id: int, entry_id: int) -> CompatibleModel:
    """Remove a brand/model from an operator's catalogue."""
    require_on_operator(by, Permission.EDIT_CATALOGUE, operator_id)
    entry = await session.get(CompatibleModel, entry_id)
    if entry is None or entry.operator_id != operator_id:
        raise NotFoundError(_("No such catalogue entry."))
    record(
        session,
        actor_of(by),
        "catalogue.remove",
        entry,
        operator_id=operator_id,
        label=f"{entry.brand} {entry.model}",
        before={"brand": entry.brand, "model": entry.model},
    )
    await session.delete(entry)
    await reevaluate_operator(session, operator_id)
    return entry


async def _is_catalogued(session: AsyncSession, operator_id: int, brand_key: str, model_key: str) -> bool:
    found = await session.exec(
        select(CompatibleModel.id)
        .where(
            CompatibleModel.operator_id == operator_id,
            CompatibleModel.brand_key == brand_key,
            CompatibleModel.model_key == model_key,
        )
        .limit(1)
    )
    return found.first() is not None
