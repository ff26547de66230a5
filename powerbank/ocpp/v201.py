"""OCPP 2.0.1: what the hub answers a charging station, and the capability probe after its boot."""

from __future__ import annotations

import logging
from typing import Any

from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

from powerbank.ocpp import bounds, security
from powerbank.ocpp.connection import HubConnection
from powerbank.ocpp.meter import now_text, parse_timestamp
from powerbank.services import chargers
from powerbank.services.chargers import BootInfo, Capability

logger = logging.getLogger("powerbank.ocpp")

PROBED_VARIABLES = [
    ("SmartChargingCtrlr", "Available"),
    ("SmartChargingCtrlr", "Enabled"),
    ("SmartChargingCtrlr", "ProfileStackLevel"),
    ("SmartChargingCtrlr", "RateUnit"),
    ("SampledDataCtrlr", "TxUpdatedInterval"),
]
RATE_UNITS = {"A": "Current", "W": "Power"}


def capability_from_variables(results: list[dict[str, Any]]) -> Capability:
    """Read smart charging support out of a GetVariables answer."""
    values: dict[tuple[str, str], str] = {}
    for result in results:
        if result.get("attribute_status") == "Accepted" and result.get("attribute_value") is not None:
            values[(result["component"]["name"], result["variable"]["name"])] = str(result["attribute_value"])

    def flag(name: str) -> bool | None:
        value = values.get(("SmartChargingCtrlr", name))
        return None if value is None else value.strip().lower() == "true"

    available, enabled = flag("Available"), flag("Enabled")
    if available is None and enabled is None:
        # A station without a SmartChargingCtrlr at all does not do smart charging.
        known = any(
            result.get("attribute_status") == "UnknownComponent"
            for result in results
            if result["component"]["name"] == "SmartChargingCtrlr"
        )
        smart = False if known else None
    else:
        smart = available is not False and enabled is not False
    units = values.get(("SmartChargingCtrlr", "RateUnit"))
    stack = values.get(("SmartChargingCtrlr", "ProfileStackLevel"))
    interval = values.get(("SampledDataCtrlr", "TxUpdatedInterval"))
    return Capability(
        smart_charging=smart,
        max_stack_level=bounds.whole_text(stack, bounds.MAX_STACK_LEVEL),
        rate_units=",".join(RATE_UNITS.get(unit.strip(), unit.strip()) for unit in units.split(",")) if units else None,
        meter_interval_s=bounds.whole_text(interval, bounds.MAX_INTERVAL_S),
    )


class ChargePoint201(HubConnection, ChargePoint):
    protocol = "ocpp2.0.1"
    # The hub's TLS and CA settings (set by the endpoint), and a certificate signed but not yet sent.
    security: security.ChargerSecurity | None = None
    signed_certificate: str | None = None

    @on(Action.boot_notification)
    async def on_boot_notification(
        self, charging_station: dict[str, Any], reason: str, **_: Any
    ) -> call_result.BootNotification:
        boot = BootInfo(
            self.protocol,
            charging_station.get("vendor_name", ""),
            charging_station.get("model", ""),
            charging_station.get("firmware_version"),
            charging_station.get("serial_number"),
        )
        return await self.accept_boot(boot)

    async def ask_capability(self) -> Capability:
        """Ask the station's device model about its SmartChargingCtrlr."""
        answer = await self.call(
            call.GetVariables(
                get_variable_data=[
                    {"component": {"name": component}, "variable": {"name": variable}}
                    for component, variable in PROBED_VARIABLES
                ]
            )
        )
        return capability_from_variables(answer.get_variable_result)

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=now_text())

    @on(Action.status_notification)
    async def on_status_notification(
        self, timestamp: str, connector_status: str, evse_id: int, connector_id: int, **_: Any
    ) -> call_result.StatusNotification:
        bounds.connector_id(connector_id)  # Not stored, but a connector no station has is refused all the same.
        await self.store_status(
            bounds.connector_id(evse_id, "evseId"), connector_status, None, parse_timestamp(timestamp)
        )
        return call_result.StatusNotification()

    @on(Action.meter_values)
    async def on_meter_values(
        self, evse_id: int, meter_value: list[dict[str, Any]], **_: Any
    ) -> call_result.MeterValues:
        await self.store_meter(bounds.connector_id(evse_id, "evseId"), meter_value, None)
        return call_result.MeterValues()

    @on(Action.transaction_event)
    async def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        trigger_reason: str,
        seq_no: int,
        transaction_info: dict[str, Any],
        **details: Any,
    ) -> call_result.TransactionEvent:
        remote_id = str(transaction_info["transaction_id"])[:40]
        evse_id = bounds.connector_id((details.get("evse") or {}).get("id", 0), "evse.id")
        at = parse_timestamp(timestamp)
        async with self.registry.writing() as session:
            transaction = await chargers.find_transaction(session, self.charge_point_id, remote_id=remote_id)
            if transaction is None and event_type != "Ended":
                id_token = (details.get("id_token") or {}).get("id_token")
                await chargers.start_transaction(
                    session, self.charge_point_id, evse_id, at, id_tag=id_token, remote_id=remote_id
                )
            elif transaction is not None and event_type == "Ended":
                await chargers.stop_transaction(session, transaction, at, reason=transaction_info.get("stopped_reason"))
            await session.commit()
        if details.get("meter_value"):
            await self.store_meter(evse_id, details["meter_value"], remote_id)
        if details.get("id_token"):
            return call_result.TransactionEvent(id_token_info={"status": "Accepted"})
        return call_result.TransactionEvent()

    @on(Action.authorize)
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> call_result.Authorize:
        # The hub balances the grid; who may charge is the station's and its operator's business.
        return call_result.Authorize(id_token_info={"status": "Accepted"})

    @on(Action.notify_report)
    def on_notify_report(self, request_id: int, generated_at: str, seq_no: int, **_: Any) -> call_result.NotifyReport:
        return call_result.NotifyReport()

    @on(Action.sign_certificate)
    async def on_sign_certificate(self, csr: str, **details: Any) -> call_result.SignCertificate:
        # The hub's CA signs charging station certificates only, not V2G ones (ISO 15118 has its own PKI).
        if details.get("certificate_type", "ChargingStationCertificate") != "ChargingStationCertificate":
            return call_result.SignCertificate(status="Rejected")
        self.signed_certificate = await security.sign_for(self, self.security, csr)
        return call_result.SignCertificate(status="Accepted" if self.signed_certificate else "Rejected")

    @after(Action.sign_certificate)
    def after_sign_certificate(self, **_: Any) -> None:
        pem, self.signed_certificate = self.signed_certificate, None
        if pem is not None:
            request = call.CertificateSigned(certificate_chain=pem, certificate_type="ChargingStationCertificate")
            self.spawn(security.send_certificate(self, request))
