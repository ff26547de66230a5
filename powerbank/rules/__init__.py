"""Pure decisions: eligibility (R1/R2/R5/R6), Facility IDs, countries and price areas, permissions."""
