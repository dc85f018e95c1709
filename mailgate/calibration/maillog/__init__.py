"""Postfix mail logs as calibration input: parse (``lines``, ``events``), hash addresses
(``privacy``), stitch each message's path across hosts (``stitch``), aggregate per gateway
tier (``aggregate``), and turn the aggregates into a scenario overlay and a comparison with
the model (``overlay``, ``compare``)."""
