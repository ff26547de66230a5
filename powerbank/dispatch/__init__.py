"""Reaching the chargers for grid activations: the activation runner, the fan-out, the gateway routes use."""
