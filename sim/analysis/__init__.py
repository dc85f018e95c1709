"""What is computed from a scenario alone (offered load) or from model runs (results,
the self-test, plots)."""
