"""mailgate's model side: the scenario format and the SimPy model of the topology.

``sim`` never imports ``realnet``; realnet builds from ``sim.topology``.
"""

__version__ = "0.1.0"
