"""mailgate's front door: the ``mailgate`` command, above both ``sim`` and ``realnet``."""
