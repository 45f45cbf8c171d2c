"""An optional third-party captcha (CAPTCHA_PROVIDER=turnstile|hcaptcha) for deployments
whose owners prefer one to the proof of work, in their own front ends: while a poll's
challenge is on, a vote may carry the provider's token as `captcha` instead of an
`altcha` solution, and the service asks the provider's siteverify endpoint about it.

When the provider cannot be reached (a timeout, a network error, an answer that is not
its JSON), the vote is refused with `403 challenge_required` saying so, and nothing is
counted: the service never lets an unchecked vote through. The proof of work stays
accepted beside the captcha, so a front end that falls back to it on that refusal still
votes; a person is never locked out by an outage of someone else's service.
"""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from service.infra import metrics

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

PROVIDERS = ("turnstile", "hcaptcha")
VERIFY_URLS = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
}
TOKEN_MAX = 4096  # Turnstile's tokens are up to 2048 characters; hCaptcha's are shorter
FAILED = "The captcha of this vote was not accepted by its provider; solve a fresh one."
UNREACHABLE = ("The captcha provider could not be reached, so this vote could not be "
               "checked; vote with a proof of work (`altcha`) instead.")


class Verdict(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"


@dataclass
class SiteVerify:
    """The provider's siteverify call (the same form for Turnstile and hCaptcha), with
    one HTTP client per process, made on first use."""

    provider: str
    site_key: str
    secret_key: str
    url: str
    timeout_seconds: float
    _client: httpx.Client | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def verify(self, token: str, *, remote_ip: str) -> Verdict:
        """Ask the provider whether `token` is a fresh, passed captcha of our site."""
        # Imported on first use: ~5 MB of each worker's memory, wanted only by the
        # deployments that configure a provider.
        import httpx

        form = {"secret": self.secret_key, "response": token, "remoteip": remote_ip,
                "sitekey": self.site_key}
        try:
            response = self._http(httpx.Client).post(self.url, data=form)
            response.raise_for_status()
            answer = response.json()
        except (httpx.HTTPError, ValueError) as error:
            log.warning("captcha provider %s could not be reached: %s", self.provider,
                        type(error).__name__)
            metrics.CAPTCHA_CHECKS.labels(self.provider, Verdict.UNREACHABLE.value).inc()
            return Verdict.UNREACHABLE
        verdict = Verdict.PASSED if answer.get("success") is True else Verdict.FAILED
        metrics.CAPTCHA_CHECKS.labels(self.provider, verdict.value).inc()
        return verdict

    def _http(self, client_class: type[httpx.Client]) -> httpx.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = client_class(timeout=self.timeout_seconds)
        return self._client


def from_config(config) -> SiteVerify | None:
    """The configured provider's check, or None without CAPTCHA_PROVIDER."""
    provider = config.get("CAPTCHA_PROVIDER")
    if not provider:
        return None
    return SiteVerify(provider=provider, site_key=config["CAPTCHA_SITE_KEY"],
                      secret_key=config["CAPTCHA_SECRET_KEY"],
                      url=config["CAPTCHA_VERIFY_URL"] or VERIFY_URLS[provider],
                      timeout_seconds=config["CAPTCHA_TIMEOUT_SECONDS"])
