"""The marshmallow field types the schemas share: strict JSON types, trimmed strings,
UTC times and web origins."""

from __future__ import annotations

from datetime import UTC
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields

from service.infra.clock import iso

DEFAULT_PORTS = {"http": 80, "https": 443}


class Trimmed(fields.String):
    """A string with surrounding whitespace removed before validation."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()

class StrictBoolean(fields.Boolean):
    """Only JSON `true` and `false`."""

    def _deserialize(self, value, attr, data, **kwargs):
        # Not `value in {True}`: 1 == True, so a set test would let 1 and 0 through.
        if value is True or value is False:
            return value
        raise self.make_error("invalid", input=value)

class StrictInteger(fields.Integer):
    """Only JSON integers: no strings, no floats."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)

class UTCDateTime(fields.AwareDateTime):
    """ISO 8601 in; ISO 8601 UTC with a `Z` suffix out. Times without an offset are UTC."""

    def __init__(self, **kwargs):
        super().__init__(format="iso", default_timezone=UTC, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return iso(value)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).astimezone(UTC)

class Origin(fields.String):
    """A web origin `scheme://host[:port]`, normalized as browsers send it."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        message = f"{text!r} is not an origin of the form scheme://host[:port]."
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise ValidationError(message) from None
        if (
            parts.scheme.lower() not in DEFAULT_PORTS
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or text.endswith("#")
            or text.endswith("?")
        ):
            raise ValidationError(message)
        scheme = parts.scheme.lower()
        host = parts.hostname.lower()
        if ":" in host:
            host = f"[{host}]"
        if port is None or port == DEFAULT_PORTS[scheme]:
            return f"{scheme}://{host}"
        return f"{scheme}://{host}:{port}"
