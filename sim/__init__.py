"""The model side (``mailgate.sim``): the scenario format both worlds build from
(``scenario``), the SimPy model (``model``) and what is computed from scenarios and
runs (``analysis``). Never imports ``mailgate.realnet``.
"""
