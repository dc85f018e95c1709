"""Calibration bridges the two worlds: fit stage costs from real traces, run the model
at the same loads, compare measured and modelled."""
