"""The marshmallow field types the schemas share: strict JSON types, trimmed strings,
UTC times and web origins."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields

from service.infra.clock import iso

DEFAULT_PORTS = {"http": 80, "https": 443}
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(3000, 1, 1, tzinfo=UTC)


class Text(fields.String):
    """A string without NUL characters, which PostgreSQL's text cannot hold: refused here,
    naming the field, before any vote is claimed or any answer starts streaming."""

    default_error_messages = {"nul": "Must not contain NUL characters."}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise self.make_error("nul")
        return text

class Trimmed(Text):
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
    """ISO 8601 in; ISO 8601 UTC with a `Z` suffix out. Times without an offset are UTC.
    Times are bounded, so arithmetic on them (windows, buckets, expiries) never overflows."""

    default_error_messages = {
        "range": f"Must be a time from {EARLIEST_TIME.year} to before {LATEST_TIME.year}.",
    }

    def __init__(self, **kwargs):
        super().__init__(format="iso", default_timezone=UTC, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return iso(value)

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
            raise self.make_error("range") from None
        if not EARLIEST_TIME <= moment < LATEST_TIME:
            raise self.make_error("range")
        return moment

class Origin(Text):
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
