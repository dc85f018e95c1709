"""The SimPy model: the engine (the only code that touches SimPy's internals), hosts,
the policy parts and the Model that wires them; ``simulate`` runs it."""
