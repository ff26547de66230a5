"""HTTP routes: one blueprint per feature. They never import powerbank.ocpp."""
