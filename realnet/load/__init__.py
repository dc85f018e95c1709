"""Traffic against a running testbed: the open-loop load generator, mail clients and
the probe (mail to yourself)."""
