"""The shipped scenarios, as package data (``mailgate scenarios`` lists them)."""
