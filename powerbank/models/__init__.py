"""Every table of PowerBank, one module per area; importing this package registers them all on the metadata.

Tables are created and changed only by the Alembic migrations in ``migrations/``.
"""

from powerbank.models.activations import (
    Activation,
    ActivationAction,
    ActivationState,
    DeliverySample,
    Dispatch,
    DispatchStatus,
)
from powerbank.models.api_tokens import ApiToken, TokenAccess
from powerbank.models.audit import AuditEntry
from powerbank.models.availability import AreaAvailability
from powerbank.models.baselines import MeterQuarter as MeterQuarter
from powerbank.models.certificates import ChargerCertificate as ChargerCertificate
from powerbank.models.charge_points import ChargePoint, CompatibleModel
from powerbank.models.chargers import (
    ChargerCapability,
    ChargingTransaction,
    ConnectionAttempt,
    ConnectorStatus,
    MeterSample,
    SharedFrames,
)
from powerbank.models.cluster import ClusterNode
from powerbank.models.delivery_record import DeliveryRecord as DeliveryRecord
from powerbank.models.delivery_record import DeliveryRecordCharger as DeliveryRecordCharger
from powerbank.models.earnings import (
    AvailableHour,
    DeliveredEnergy,
    EarningsMonth,
    EarningsSettled,
    MarketPrice,
    OperatorRevenueShare,
    StatementLine,
    TeamRevenueShare,
)
from powerbank.models.enrollment import (
    Participation,
    ParticipationEvent,
    ParticipationSource,
    ParticipationState,
    TermsAcceptance,
    TermsVersion,
)
from powerbank.models.mail import MailMessage, MailStatus
from powerbank.models.notifications import DeliveryStatus as DeliveryStatus
from powerbank.models.notifications import Notification as Notification
from powerbank.models.notifications import NotificationPreference as NotificationPreference
from powerbank.models.notifications import Webhook as Webhook
from powerbank.models.notifications import WebhookAttempt as WebhookAttempt
from powerbank.models.notifications import WebhookDelivery as WebhookDelivery
from powerbank.models.reliability import DeliveryVerdict as DeliveryVerdict
from powerbank.models.tenancy import (
    Invitation,
    Operator,
    OperatorMembership,
    OperatorRole,
    Team,
    TeamMembership,
    TeamRole,
    User,
)
from powerbank.models.throttles import ApiRateBucket, LoginFailures

__all__ = [
    "Activation",
    "ActivationAction",
    "ActivationState",
    "ApiRateBucket",
    "ApiToken",
    "AreaAvailability",
    "AvailableHour",
    "DeliveredEnergy",
    "EarningsMonth",
    "EarningsSettled",
    "MarketPrice",
    "OperatorRevenueShare",
    "StatementLine",
    "TeamRevenueShare",
    "TokenAccess",
    "AuditEntry",
    "ChargePoint",
    "ChargerCapability",
    "ChargingTransaction",
    "ClusterNode",
    "DeliverySample",
    "CompatibleModel",
    "ConnectionAttempt",
    "ConnectorStatus",
    "Dispatch",
    "DispatchStatus",
    "Invitation",
    "LoginFailures",
    "MailMessage",
    "MailStatus",
    "MeterSample",
    "SharedFrames",
    "Operator",
    "OperatorMembership",
    "OperatorRole",
    "Participation",
    "ParticipationEvent",
    "ParticipationSource",
    "ParticipationState",
    "Team",
    "TeamMembership",
    "TeamRole",
    "TermsAcceptance",
    "TermsVersion",
    "User",
]
