"""The published demo credentials; accepted only when PowerBank runs in demo mode."""

DEMO_PASSWORD = "powerbank-demo"
DEMO_CHARGER_PASSWORD = "demo-charger"
