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
from powerbank.models.enrollment import (
    Participation,
    ParticipationEvent,
    ParticipationSource,
    ParticipationState,
    TermsAcceptance,
    TermsVersion,
)
from powerbank.models.mail import MailMessage, MailStatus
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
