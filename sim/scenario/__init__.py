"""The shared vocabulary of the model and the real chain: the scenario schema (frozen
dataclasses), loading with ``extends``, distributions, and the trace record format.
Imports neither simpy nor asyncio."""
