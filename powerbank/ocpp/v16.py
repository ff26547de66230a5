"""OCPP 1.6J: what the hub answers a charger, and the capability probe after its boot."""

from __future__ import annotations

import logging
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from powerbank.ocpp import bounds, security
from powerbank.ocpp.connection import HubConnection
from powerbank.ocpp.meter import now_text, parse_timestamp, readings_from
from powerbank.services import chargers
from powerbank.services.chargers import BootInfo, Capability

logger = logging.getLogger("powerbank.ocpp")

PROBED_KEYS = [
    "SupportedFeatureProfiles",
    "ChargeProfileMaxStackLevel",
    "ChargingScheduleAllowedChargingRateUnit",
    "MeterValueSampleInterval",
]


def capability_from_configuration(keys: list[dict[str, Any]]) -> Capability:
    """Read smart charging support out of a GetConfiguration answer."""
    values = {item["key"]: item.get("value") for item in keys if "key" in item}
    profiles = values.get("SupportedFeatureProfiles")
    smart = None if profiles is None else "SmartCharging" in [p.strip() for p in profiles.split(",")]
    return Capability(
        smart_charging=smart,
        feature_profiles=profiles,
        max_stack_level=bounds.whole_text(values.get("ChargeProfileMaxStackLevel"), bounds.MAX_STACK_LEVEL),
        rate_units=values.get("ChargingScheduleAllowedChargingRateUnit"),
        meter_interval_s=bounds.whole_text(values.get("MeterValueSampleInterval"), bounds.MAX_INTERVAL_S),
    )


class ChargePoint16(HubConnection, ChargePoint):
    protocol = "ocpp1.6"
    # The hub's TLS and CA settings (set by the endpoint), and a certificate signed but not yet sent.
    security: security.ChargerSecurity | None = None
    signed_certificate: str | None = None
    error_codes = {
        "FormatViolation": "FormationViolation",
        "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
        "RpcFrameworkError": "FormationViolation",
        "MessageTypeNotSupported": "ProtocolError",
    }

    @on(Action.boot_notification)
    async def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str, **details: Any
    ) -> call_result.BootNotification:
        boot = BootInfo(
            self.protocol,
            charge_point_vendor,
            charge_point_model,
            details.get("firmware_version"),
            details.get("charge_point_serial_number") or details.get("charge_box_serial_number"),
        )
        return await self.accept_boot(boot)

    async def ask_capability(self) -> Capability:
        """Ask the charger's configuration what it can do (smart charging)."""
        answer = await self.call_raw("GetConfiguration", {"key": PROBED_KEYS})
        return capability_from_configuration(answer.get("configurationKey") or [])

    @on(Action.heartbeat)
    def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=now_text())

    @on(Action.status_notification)
    async def on_status_notification(
        self, connector_id: int, error_code: str, status: str, **details: Any
    ) -> call_result.StatusNotification:
        timestamp = details.get("timestamp")
        await self.store_status(
            bounds.connector_id(connector_id),
            status,
            None if error_code == "NoError" else error_code,
            parse_timestamp(timestamp) if timestamp else None,
        )
        return call_result.StatusNotification()

    @on(Action.meter_values)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[dict[str, Any]], transaction_id: int | None = None, **_: Any
    ) -> call_result.MeterValues:
        # An id the hub never handed out names no transaction: the values are kept without it.
        known_id = bounds.database_id(transaction_id)
        await self.store_meter(
            bounds.connector_id(connector_id), meter_value, None if known_id is None else str(known_id)
        )
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str) -> call_result.Authorize:
        # The hub balances the grid; who may charge is the charger's and its operator's business.
        return call_result.Authorize(id_tag_info={"status": "Accepted"})

    @on(Action.start_transaction)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> call_result.StartTransaction:
        connector = bounds.connector_id(connector_id)
        async with self.registry.writing() as session:
            transaction = await chargers.start_transaction(
                session,
                self.charge_point_id,
                connector,
                parse_timestamp(timestamp),
                id_tag=id_tag,
                meter_start_wh=bounds.register_wh(meter_start),
            )
            await session.commit()
        return call_result.StartTransaction(transaction_id=transaction.id or 0, id_tag_info={"status": "Accepted"})

    @on(Action.stop_transaction)
    async def on_stop_transaction(
        self, meter_stop: int, timestamp: str, transaction_id: int, **details: Any
    ) -> call_result.StopTransaction:
        # An id the hub never handed out is answered like any unknown one (the charger drops it).
        known_id = bounds.database_id(transaction_id)
        async with self.registry.writing() as session:
            transaction = (
                None
                if known_id is None
                else await chargers.find_transaction(session, self.charge_point_id, transaction_id=known_id)
            )
            if transaction is None:
                logger.info("%s stopped unknown transaction %s", self.id, transaction_id)
            else:
                await chargers.stop_transaction(
                    session,
                    transaction,
                    parse_timestamp(timestamp),
                    meter_stop_wh=bounds.register_wh(meter_stop),
                    reason=details.get("reason"),
                )
            await chargers.store_meter_values(
                session,
                self.charge_point_id,
                0,
                readings_from(details.get("transaction_data")),
                None if known_id is None else str(known_id),
            )
            await session.commit()
        if details.get("id_tag"):
            return call_result.StopTransaction(id_tag_info={"status": "Accepted"})
        return call_result.StopTransaction()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **details: Any) -> call_result.DataTransfer:
        logger.info("%s: DataTransfer from vendor %s (%s)", self.id, vendor_id, details.get("message_id"))
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(self, status: str) -> call_result.FirmwareStatusNotification:
        logger.info("%s: firmware %s", self.id, status)
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(self, status: str) -> call_result.DiagnosticsStatusNotification:
        logger.info("%s: diagnostics %s", self.id, status)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.sign_certificate)
    async def on_sign_certificate(self, csr: str, **_: Any) -> call_result.SignCertificate:
        # Security whitepaper: the charger sends a CSR with its identity; the hub signs it, then
        # sends the certificate in a call of its own (never from inside this handler).
        self.signed_certificate = await security.sign_for(self, self.security, csr)
        return call_result.SignCertificate(status="Accepted" if self.signed_certificate else "Rejected")

    @after(Action.sign_certificate)
    def after_sign_certificate(self, **_: Any) -> None:
        pem, self.signed_certificate = self.signed_certificate, None
        if pem is not None:
            self.spawn(security.send_certificate(self, call.CertificateSigned(certificate_chain=pem)))
