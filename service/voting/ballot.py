"""A ballot: what a voter sends, checked against the poll's rules, and the values that
identify it (its id, its receipt, the voter's per-poll keyed hashes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass

from service.infra.errors import OriginNotAllowed, ValidationFailed
from service.infra.identity import Voter, keyed_hash

BALLOT_ID_ALPHABET = string.ascii_letters + string.digits
BALLOT_ID_LENGTH = 16
RECEIPT_BYTES = 32  # a receipt withdraws a vote: as unguessable as an API key
# Which identities each duplicate check compares; a vote is refused if any was seen.
CHECKED_IDENTITIES = {
    "none": (),
    "cookie": ("cookie",),
    "ip": ("ip",),
    "cookie_and_ip": ("cookie", "ip"),
    "user": ("user",),
}
DUPLICATE_DETAILS = {
    "cookie": "This browser has already voted in this poll.",
    "ip": "A vote from this network address has already been counted in this poll.",
    "user": "This account has already voted in this poll.",
}


@dataclass(frozen=True)
class SignedUser:
    """A site's logged-in user: its id, signed with the poll's signing secret."""

    id: str
    sig: str


@dataclass(frozen=True)
class Ballot:
    """A parsed vote, as the JSON API and the no-JS form send it."""

    choices: tuple[int, ...] = ()
    other: str | None = None
    comment: str | None = None
    context: str | None = None
    user: SignedUser | None = None
    # The solution of the poll's proof-of-work challenge (service/voting/challenge.py):
    # not part of the vote's meaning (canonical), a retry may carry a fresh one.
    altcha: str | None = None
    # Or, with CAPTCHA_PROVIDER set, the provider's token (service/voting/captcha.py).
    captcha: str | None = None

    @classmethod
    def from_fields(cls, fields: Mapping) -> Ballot:
        """From VoteSchema's fields."""
        user = fields.get("voter")
        return cls(choices=tuple(fields.get("choices") or ()), other=fields.get("other"),
                   comment=fields.get("comment"), context=fields.get("context"),
                   user=SignedUser(user["id"], user["sig"]) if user else None,
                   altcha=fields.get("altcha"), captcha=fields.get("captcha"))

    def canonical(self) -> str:
        """One text per meaning: two bodies that mean the same vote give the same text."""
        fields = {"choices": list(self.choices), "other": self.other, "comment": self.comment,
                  "context": self.context,
                  "voter": None if self.user is None else {"id": self.user.id,
                                                          "sig": self.user.sig}}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class VoteFacts:
    """What the request says besides the ballot."""

    voter: Voter
    origin: str | None = None  # the request's Origin header
    own_origin: str = ""  # the service's own origin: its widget votes from it
    idempotency_key: str | None = None  # the Idempotency-Key header, as sent


# Random bits per ballot id: 62**16 ids (95 bits) read from 128 random bits in one call,
# instead of one call per character (16 getrandom system calls a vote); the bias of
# the remainder is about 2**-32.
_BALLOT_ID_BITS = 128


def new_ballot_id() -> str:
    number = int.from_bytes(secrets.token_bytes(_BALLOT_ID_BITS // 8))
    characters = []
    for _ in range(BALLOT_ID_LENGTH):
        number, index = divmod(number, len(BALLOT_ID_ALPHABET))
        characters.append(BALLOT_ID_ALPHABET[index])
    return "".join(characters)


def idempotency_hash(secret: str, poll_id: str, idempotency_key: str) -> str:
    """The per-poll keyed hash an Idempotency-Key is known by (never the key itself)."""
    return keyed_hash(secret, poll_id, "idempotency", idempotency_key)


def new_receipt(*, secret: str, poll_id: str, ballot_id: str,
                idempotency_key: str | None) -> str:
    """The voter's receipt: random, or, for a keyed vote, derived from the key and the
    ballot so a retry can be answered with it again although only its hash is kept."""
    if idempotency_key is None:
        return secrets.token_urlsafe(RECEIPT_BYTES)
    message = f"receipt\x00{poll_id}\x00{ballot_id}\x00{idempotency_key}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def receipt_hash(receipt: str) -> str:
    """What is stored of a receipt: its SHA-256 (receipts carry 256 random bits)."""
    return hashlib.sha256(receipt.encode()).hexdigest()


def user_signature(secret: str, poll_id: str, user_id: str) -> str:
    """The signature an owner's site sends for a logged-in user: HMAC-SHA256, hex."""
    return hmac.new(secret.encode(), f"{poll_id}:{user_id}".encode(), hashlib.sha256).hexdigest()


def check_origin(poll, facts: VoteFacts) -> None:
    """Refuse a browser vote sent from a site outside the poll's allowed origins."""
    origin = facts.origin
    if origin is None or not poll.allowed_origins:
        return
    if origin.lower() == facts.own_origin or origin in poll.allowed_origins:
        return
    raise OriginNotAllowed()


def validate(poll, ballot: Ballot, *, check_user: bool = True) -> None:
    """Check the ballot against the poll's rules: ValidationFailed names each field. A
    change (check_user False) is made with the vote's receipt, not the site's user."""
    errors: dict[str, list[str]] = {}
    messages = _choice_errors(poll, ballot)
    if ballot.other is not None and not poll.allow_other:
        errors["other"] = ["This poll does not accept other answers."]
    if messages:
        errors["choices"] = messages
    if ballot.comment is not None and not poll.allow_comment:
        errors["comment"] = ["This poll does not accept comments."]
    if check_user and poll.duplicate_check == "user":
        errors.update(_user_errors(poll, ballot.user))
    if errors:
        raise ValidationFailed(errors)


def _choice_errors(poll, ballot: Ballot) -> list[str]:
    choices = ballot.choices
    known = {option.id for option in poll.options}
    messages = [f"Unknown option {choice}." for choice in choices if choice not in known]
    if len(set(choices)) != len(choices):
        messages.append("Each option can be chosen only once.")
    if len(choices) > poll.max_choices:
        messages.append(f"Choose at most {poll.max_choices} option(s).")
    if not choices and (ballot.other is None or not poll.allow_other):
        messages.append("Choose at least one option.")
    return messages


def _user_errors(poll, user: SignedUser | None) -> dict[str, list[str]]:
    if user is None:
        return {"voter": ["This poll needs the site's signed user: {\"id\", \"sig\"}."]}
    expected = user_signature(poll.signing_secret, poll.id, user.id)
    if not hmac.compare_digest(user.sig.lower(), expected):
        return {"voter.sig": ["The signature does not match this poll and user id."]}
    return {}


def voter_hashes(*, poll, voter: Voter, ballot: Ballot, secret: str) -> dict[str, str]:
    """The voter's per-poll keyed hashes, by identity kind."""
    hashes = {
        "cookie": keyed_hash(secret, poll.id, "cookie", voter.cookie_id),
        "ip": keyed_hash(secret, poll.id, "ip", voter.address),
    }
    if poll.duplicate_check == "user" and ballot.user is not None:
        hashes["user"] = keyed_hash(secret, poll.id, "user", ballot.user.id)
    return hashes
