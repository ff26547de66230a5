"""The compatibility catalogue (R2): which brands and models can take part in PowerBank.

Every edit re-evaluates the operator's charge points at once (suspension, DK2 sign-up), whoever makes it.
"""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.errors import ConflictError, NotFoundError
from powerbank.models import CompatibleModel
from powerbank.rules.eligibility import catalogue_key
from powerbank.rules.permissions import Permission
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
        raise ConflictError(f"{clean_brand} {clean_model} is already in the catalogue.")
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
        raise NotFoundError("No such catalogue entry.")
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
