"""The testbed: one process per host on its own loopback address, the gateways built
from the scenario, the supervisor and the remote Internet."""
