"""Import every table module, so the metadata knows the whole schema (used by Alembic)."""

from powerbank import models  # noqa: F401
from powerbank import enrollment_models  # noqa: F401
from powerbank import api_models  # noqa: F401
from powerbank import ocpp_models  # noqa: F401
from powerbank import activation_models  # noqa: F401
