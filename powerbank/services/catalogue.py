"""The compatibility catalogue (R2): which brands and models can take part in PowerBank."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.errors import ConflictError, NotFoundError
from powerbank.models import ChargePoint, CompatibleModel
from powerbank.rules.permissions import Permission
from powerbank.rules.validators import clean_name
from powerbank.services.access import Acting, actor_of, require_on_operator
from powerbank.services.audit import record

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


def catalogue_key(brand: str, model: str) -> tuple[str, str]:
    """Return the case- and space-insensitive key a brand/model is matched by."""
    return (" ".join(brand.split()).casefold(), " ".join(model.split()).casefold())


async def catalogue_keys(session: AsyncSession, operator_id: int) -> set[tuple[str, str]]:
    """Return the keys of every catalogued brand/model of an operator (one query)."""
    rows = await session.exec(
        select(CompatibleModel.brand_key, CompatibleModel.model_key).where(CompatibleModel.operator_id == operator_id)
    )
    return {(brand, model) for brand, model in rows}


def compatibility_problem(charge_point: ChargePoint, keys: set[tuple[str, str]]) -> str | None:
    """Return why a charge point is not compatible, or None when it is (R2).

    Once the charger has connected, what it reported counts: its BootNotification vendor
    and model, and whether it reported smart charging support.
    """
    if charge_point.smart_charging is False:
        return "The charger reports no smart charging support"
    brand, model = charge_point.effective_brand, charge_point.effective_model
    if catalogue_key(brand, model) not in keys:
        shown = f"{brand} {model}".strip() or "Unknown model"
        return f"{shown} is not in the compatibility catalogue"
    return None


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
    if (brand_key, model_key) in await catalogue_keys(session, operator_id):
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
    await _reevaluate_operator(session, operator_id)
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
    await _reevaluate_operator(session, operator_id)
    return entry


async def _reevaluate_operator(session: AsyncSession, operator_id: int) -> None:
    # Imported here: the enrollment service itself judges compatibility with this module.
    from powerbank.services.enrollment import reevaluate_operator

    await reevaluate_operator(session, operator_id)
