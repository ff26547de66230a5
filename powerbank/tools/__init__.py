"""Programs beside the hub: the charger simulator and the demo data. Nothing in the hub imports them."""
