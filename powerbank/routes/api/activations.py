"""JSON API v1: grid activations (start, watch, list, cancel) on the API blueprint.

The routes live on ``powerbank.routes.api.blueprint`` so they share its token authentication,
rate limit, problem documents and OpenAPI document. Activations are operator-wide: they need a
token for the whole operator; starting and cancelling need write access.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from quart import Response
from quart_schema import document_response, validate_querystring, validate_request, validate_response

from powerbank.dispatch.gateway import gateway, judged_delivery
from powerbank.errors import ForbiddenError, NotFoundError
from powerbank.models import Activation, Dispatch, DispatchStatus
from powerbank.routes import api
from powerbank.routes.api import schemas
from powerbank.routes.api.schemas import PageQuery, RequestBody
from powerbank.services import activations as service
from powerbank.services import delivery
from powerbank.services.api_tokens import actor_for_token
from powerbank.web.render import csv_download
from powerbank.web.state import db_session

blueprint = api.blueprint


class ActivationCreate(RequestBody):
    price_area: str = Field(description=f"One of {', '.join(service.AREAS)}.", examples=["DK2"])
    action: Literal["pause", "limit"] = Field(description="pause: no charging; limit: at most limit_kw per charger.")
    limit_kw: float | None = Field(
        default=None, description=f"Per charger, 0 to {service.MAX_LIMIT_KW:g} kW; needed for limit, ignored for pause."
    )
    duration_s: int = Field(description=f"{service.MIN_DURATION_S} to {service.MAX_DURATION_S} seconds.")
    market: str = Field(
        default="Test", max_length=40, description=f"The market it serves, e.g. {', '.join(service.MARKETS)}."
    )
    start_at: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When to start (ISO 8601 with time zone); leave out to start now.",
    )


class ActivationSummary(BaseModel):
    total: int = Field(description="Signed-up chargers of the area when it was triggered.")
    sent: int
    answered: int
    accepted: int
    rejected: int
    not_supported: int
    timeout: int
    offline: int
    error: int
    pending: int
    released: int
    last_send_s: float | None = Field(
        description="Seconds from the trigger until the last frame was handed to the sockets."
    )
    answered_50_s: float | None = Field(description="Seconds from the trigger until half the sent chargers answered.")
    answered_95_s: float | None
    answered_100_s: float | None


class ChargerResult(BaseModel):
    charge_point_id: int | None
    identity: str
    status: str = Field(description="pending, Accepted, Rejected, NotSupported, timeout, offline or error.")
    detail: str
    limit_w: float | None
    sent_at: datetime | None
    answered_at: datetime | None
    latency_s: float | None = Field(description="Seconds from sending to the answer.")
    released_at: datetime | None
    release_reason: str | None
    release_status: str | None
    power_before_w: float | None
    power_during_w: float | None
    metering: str | None = Field(
        description="How it was asked to report power during the activation, and what it took."
    )


class ActivationOut(BaseModel):
    id: int
    price_area: str
    market: str
    action: Literal["pause", "limit"]
    limit_kw: float | None
    start_at: datetime
    end_at: datetime
    duration_s: int
    state: Literal["scheduled", "active", "ended", "cancelled"]
    created_by: str
    created_at: datetime
    triggered_at: datetime | None
    ended_at: datetime | None
    cancelled_by: str | None
    summary: ActivationSummary
    chargers: list[ChargerResult] | None = Field(default=None, description="Per charger; only for one activation.")


class ActivationList(BaseModel):
    items: list[ActivationOut]
    page: int
    page_size: int


def summary_out(summary: service.Summary) -> ActivationSummary:
    return ActivationSummary(
        total=summary.total,
        sent=summary.sent,
        answered=summary.answered,
        accepted=summary.count(DispatchStatus.ACCEPTED),
        rejected=summary.count(DispatchStatus.REJECTED),
        not_supported=summary.count(DispatchStatus.NOT_SUPPORTED),
        timeout=summary.count(DispatchStatus.TIMEOUT),
        offline=summary.count(DispatchStatus.OFFLINE),
        error=summary.count(DispatchStatus.ERROR),
        pending=summary.count(DispatchStatus.PENDING),
        released=summary.released,
        last_send_s=summary.last_send_s,
        answered_50_s=summary.answered_s[50],
        answered_95_s=summary.answered_s[95],
        answered_100_s=summary.answered_s[100],
    )


def activation_out(
    activation: Activation, dispatches: list[Dispatch] | None, summary: service.Summary | None = None
) -> ActivationOut:
    """Serialise an activation; with its dispatch rows, the per-charger results too."""
    summary = summary or service.summarise(activation, dispatches or [])
    return ActivationOut(
        id=activation.id or 0,
        price_area=activation.price_area,
        market=activation.market,
        action=activation.action,  # type: ignore[arg-type]
        limit_kw=activation.limit_kw,
        start_at=activation.start_at,
        end_at=activation.end_at,
        duration_s=activation.duration_s,
        state=activation.state,  # type: ignore[arg-type]
        created_by=activation.created_by,
        created_at=activation.created_at,
        triggered_at=activation.triggered_at,
        ended_at=activation.ended_at,
        cancelled_by=activation.cancelled_by,
        summary=summary_out(summary),
        chargers=[
            ChargerResult(
                charge_point_id=d.charge_point_id,
                identity=d.identity,
                status=d.status,
                detail=d.detail,
                limit_w=d.limit_w,
                sent_at=d.sent_at,
                answered_at=d.answered_at,
                latency_s=(d.answered_at - d.sent_at).total_seconds() if d.answered_at and d.sent_at else None,
                released_at=d.released_at,
                release_reason=d.release_reason,
                release_status=d.release_status,
                power_before_w=d.power_before_w,
                power_during_w=d.power_during_w,
                metering=d.metering,
            )
            for d in dispatches
        ]
        if dispatches is not None
        else None,
    )


def token_operator_id() -> int:
    """Return the operator of an operator-wide token; a team token may not touch activations.

    Nor may a token whose creator no longer manages the operator's activations (a former operator
    admin who kept only a team role): a token never sees more than its creator may.
    """
    token = api.current_token()
    if token.team_id is not None:
        raise ForbiddenError("Activations are operator-wide: use a token for the whole operator, not one team.")
    if not api.current_principal().sees_activations:
        raise ForbiddenError("The person who created this API token no longer manages the operator's activations.")
    return token.operator_id


async def load_activation(activation_id: int) -> Activation:
    """Return an activation of the token's operator (the API's loader: its tenant is the token's)."""
    activation = await (await db_session()).get(Activation, activation_id)
    if activation is None or activation.operator_id != token_operator_id():
        raise NotFoundError("No such activation.")
    return activation


@blueprint.post("/activations")
@validate_request(ActivationCreate)
@validate_response(ActivationOut, 201)
@api.problems(*api.COMMON, *api.BODY)
async def create_activation(data: ActivationCreate) -> tuple[ActivationOut, int]:
    """Start a grid activation: pause or limit every signed-up charger of a price area.

    Without start_at it starts at once: the limit goes to every signed-up, connected charger
    of the area together, and ends by itself after duration_s. Follow it with GET
    /activations/{id}.
    """
    operator_id = token_operator_id()
    api.require_write()
    request = service.clean_activation(data.model_dump())
    activation = await gateway().start_activation(
        await db_session(), api.current_principal(), actor_for_token(api.current_token()), operator_id, request
    )
    return activation_out(activation, []), 201


@blueprint.get(f"/activations/<{api.ID}:activation_id>")
@validate_response(ActivationOut)
@api.problems(*api.COMMON, 403)
async def get_activation(activation_id: int) -> ActivationOut:
    """Show an activation with a summary and the result per charger."""
    activation = await load_activation(activation_id)
    dispatches = await service.dispatches_of(await db_session(), activation_id)
    return activation_out(activation, dispatches)


@blueprint.get("/activations")
@validate_querystring(PageQuery)
@validate_response(ActivationList)
@api.problems(*api.COMMON, 403, 422)
async def list_activations(query_args: PageQuery) -> ActivationList:
    """List the operator's activations, newest first, with their summaries."""
    session = await db_session()
    operator_id = token_operator_id()
    found = await service.list_activations(
        session, [operator_id], limit=query_args.page_size, offset=(query_args.page - 1) * query_args.page_size
    )
    summaries = await service.summaries_of(session, [a.id or 0 for a in found])
    return ActivationList(
        items=[activation_out(a, None, summaries[a.id or 0]) for a in found],
        page=query_args.page,
        page_size=query_args.page_size,
    )


@blueprint.delete(f"/activations/<{api.ID}:activation_id>")
@validate_response(ActivationOut)
@api.problems(*api.COMMON, 403, 409)
async def cancel_activation(activation_id: int) -> ActivationOut:
    """Cancel an activation: a scheduled one never starts, an active one is released at once."""
    activation = await load_activation(activation_id)
    api.require_write()
    session = await db_session()
    await gateway().cancel_activation(
        session, api.current_principal(), actor_for_token(api.current_token()), activation
    )
    return activation_out(activation, await service.dispatches_of(session, activation_id))


# Proof of delivery -----------------------------------------------------------------------------


class ResponseRow(BaseModel):
    time: datetime
    offset_s: int = Field(description="Seconds from the trigger (negative: before it).")
    baseline_kw: float | None = Field(description="Sum of the reporting chargers' baselines.")
    measured_kw: float | None = Field(description="Sum of the reporting chargers' measured power (step-hold).")
    limit_kw: float | None = Field(description="Sum of the reporting chargers' limits, during the window only.")
    chargers_reporting: int = Field(description="Chargers with a sample no older than 120 s at that second.")


class ChargerVerdict(BaseModel):
    identity: str
    status: str = Field(description="What the charger answered (see ChargerResult).")
    verdict: str = Field(
        description="delivered, partial, accepted but not delivered, not accepted, offline, no meter data, "
        "nothing to reduce or waiting."
    )
    baseline_kw: float | None
    baseline_method: str = Field(
        description="mean_60s, last_sample, quarter_hour_median (scheduled activations) or empty (no baseline)."
    )
    baseline_detail: str = Field(description="The method in words, with what it rests on.")
    expected_reduction_kw: float | None
    delivered_reduction_kw: float | None = Field(description="At the market's full-activation time.")
    delivered_share: float | None
    best_reduction_kw: float | None
    reached_90_percent_s: float | None
    samples: int
    clock_replaced: int = Field(description="Samples placed at the hub's receive time (implausible charger clock).")
    discarded: int = Field(description="Samples discarded as implausible (above 50 kW, or below -0.1 kW).")
    note: str = Field(description="What else the verdict rests on, e.g. a charger that stopped reporting.")


class ActivationResponse(BaseModel):
    activation_id: int
    market: str
    required_50_percent_s: float | None
    required_100_percent_s: float
    expected_reduction_kw: float
    reached_50_percent_s: float | None
    reached_100_percent_s: float | None = Field(description="90 % of the expected reduction counts as 100 %.")
    met_50_percent: bool | None
    met_100_percent: bool | None
    baseline_quarter_hour: str | None = Field(
        description="A scheduled activation's: the quarter-hour of the area's local day its chargers' "
        "baselines come from (quarter_hour_median), e.g. 17:00–17:15 Europe/Copenhagen."
    )
    discarded_samples: int = Field(description="Samples discarded as implausible, all chargers.")
    rows: list[ResponseRow] = Field(description="One row per second, from 60 s before the trigger.")
    chargers: list[ChargerVerdict]


async def _delivery_of(activation_id: int) -> delivery.Delivery | None:
    activation = await load_activation(activation_id)
    return await judged_delivery(await db_session(), activation)


@blueprint.get(f"/activations/<{api.ID}:activation_id>/response")
@validate_response(ActivationResponse)
@api.problems(*api.COMMON, 403)
async def get_response(activation_id: int) -> ActivationResponse:
    """What the meters show: the area's response at 1 s against its baseline, and a verdict per charger.

    Empty rows and chargers before the activation was triggered. docs/delivery-proof.md explains
    the baseline, the verdicts and their limits.
    """
    activation = await load_activation(activation_id)
    found = await _delivery_of(activation_id)
    requirement = delivery.requirement_for(activation.market)
    area = found.area if found is not None else delivery.AreaResponse(requirement)
    return ActivationResponse(
        activation_id=activation_id,
        market=activation.market,
        required_50_percent_s=requirement.half_s,
        required_100_percent_s=requirement.full_s,
        expected_reduction_kw=round(area.expected_w / 1000, 3),
        reached_50_percent_s=area.half_s,
        reached_100_percent_s=area.full_s,
        met_50_percent=area.half_met,
        met_100_percent=area.full_met,
        baseline_quarter_hour=found.quarter.label if found is not None and found.quarter is not None else None,
        discarded_samples=found.discarded if found is not None else 0,
        rows=[ResponseRow.model_validate(row) for row in delivery.curve_rows(area)],
        chargers=[ChargerVerdict.model_validate(row) for row in delivery.charger_rows(found.chargers if found else [])],
    )


@blueprint.get(f"/activations/<{api.ID}:activation_id>/response.csv")
@document_response(schemas.CsvText)
@api.problems(*api.COMMON, 403)
async def get_response_csv(activation_id: int) -> Response:
    """The area's response at 1 s as CSV: time, offset_s, baseline_kw, measured_kw, limit_kw, chargers_reporting."""
    found = await _delivery_of(activation_id)
    rows = delivery.curve_rows(found.area) if found is not None else []
    return csv_download(delivery.to_csv(delivery.CURVE_COLUMNS, rows), f"activation-{activation_id}-response.csv")


@blueprint.get(f"/activations/<{api.ID}:activation_id>/chargers.csv")
@document_response(schemas.CsvText)
@api.problems(*api.COMMON, 403)
async def get_chargers_csv(activation_id: int) -> Response:
    """Each charger's verdict and the numbers behind it, as CSV (the columns of ChargerVerdict)."""
    found = await _delivery_of(activation_id)
    rows = delivery.charger_rows(found.chargers) if found is not None else []
    return csv_download(delivery.to_csv(delivery.CHARGER_COLUMNS, rows), f"activation-{activation_id}-chargers.csv")
