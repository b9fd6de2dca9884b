"""The version of this API, as /health and the OpenAPI document report it."""

__version__ = "0.2.0"
