"""Storage and tracking URLs whose password never shows: `SecretUrl`.

A database or server URL can carry credentials (`postgresql+psycopg://user:secret@host/db`,
`http://user:secret@host:5000`). A URL setting becomes a `SecretUrl` where it enters (the
sweeper's settings, the tracking settings, best-eval's config, the predict command), and
what holds it downstream holds that type: `str()`, `repr()`, f-strings and %-formatting
show `***` for the password, so a log line, an MLflow param or tag, an error message or a
written file cannot leak it through a forgotten mask. Only the code that connects asks for
the secret, by name: `reveal()` (Optuna's RDBStorage, MLflow's client). The pattern of
pydantic's `SecretStr` and SQLAlchemy's `URL.render_as_string(hide_password=True)`.

Configs stay plain strings (OmegaConf holds no custom types). A job gets the storage URL
without its password (`without_password`, in its trial link) and the password through the
environment (`STORAGE_PASSWORD_ENV`), which `job_storage` puts back; `mask_urls` masks every
URL in a text that was not made from a `SecretUrl` (overrides, a driver's error message).
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

MASK = "***"
# How a job gets back the storage password the sweeper kept out of its config: the sweeper
# sets it in its own environment before launching anything, and launcher processes
# (joblib, submitit) inherit it.
STORAGE_PASSWORD_ENV = "FMNIST_HPO_STORAGE_PASSWORD"

# A URL inside free text: scheme://, then up to whitespace or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")
# libpq and SQLAlchemy also take the password as a query parameter.
_PASSWORD_QUERY = re.compile(r"(?<=[?&]password=)[^&#]*", re.IGNORECASE)


class SecretUrl:
    """A URL that shows itself with its password masked; `reveal()` gives the whole URL.

    Equal (and hashed) by the whole URL. Built from a string, or from another `SecretUrl`.
    """

    __slots__ = ("_url",)
    _url: str

    def __init__(self, url: str | SecretUrl) -> None:
        self._url = url._url if isinstance(url, SecretUrl) else str(url)

    @classmethod
    def optional(cls, url: str | SecretUrl | None) -> SecretUrl | None:
        """`SecretUrl(url)`, or None for None (an in-memory store)."""
        return None if url is None else cls(url)

    def reveal(self) -> str:
        """The whole URL, password included: only for the client that connects with it."""
        return self._url

    def reveal_password(self) -> str | None:
        """The password (decoded), or None: only to hand it to a process that connects."""
        parts = urlsplit(self._url)
        if parts.password:
            return unquote(parts.password)
        query = {k.lower(): v for k, v in parse_qs(parts.query).items()}
        return query["password"][0] if query.get("password") else None

    @property
    def has_password(self) -> bool:
        return self.reveal_password() is not None

    @property
    def scheme(self) -> str:
        return urlsplit(self._url).scheme

    def without_password(self) -> str:
        """The URL with no password at all (the user stays): safe to show and to hand on."""
        parts = urlsplit(self._url)
        url = self._url
        if _PASSWORD_QUERY.search(url):
            # Rebuilt only then: urlunsplit turns `sqlite:///x.db` into `sqlite:/x.db`.
            kept = [p for p in parts.query.split("&") if not p.lower().startswith("password=")]
            url = urlunsplit(parts._replace(query="&".join(kept)))
        return _with_password(url, None) if parts.password else url

    def with_password(self, password: str) -> SecretUrl:
        """This URL with `password` (plain text; encoded here) for its user."""
        return SecretUrl(_with_password(self._url, quote(password, safe="")))

    def redact(self, text: str) -> str:
        """`text` (a driver's error message, say) with this URL's password replaced by ***,
        in any of the forms it may be quoted in, and every URL in it masked."""
        password = self.reveal_password()
        if password:
            forms = {password, quote(password, safe=""), urlsplit(self._url).password or ""}
            # Longest first, so no shorter form breaks a longer one apart.
            for secret in sorted(forms - {""}, key=len, reverse=True):
                text = text.replace(secret, MASK)
        return mask_urls(text)

    def __str__(self) -> str:
        url = _PASSWORD_QUERY.sub(MASK, self._url)
        return _with_password(url, MASK) if urlsplit(url).password else url

    def __repr__(self) -> str:
        return f"SecretUrl({str(self)!r})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)


def mask_urls(text: str) -> str:
    """`text` with the password of every URL in it replaced by *** (Hydra overrides, a
    config value, an error message that quotes a URL)."""
    return _URL_IN_TEXT.sub(lambda match: str(SecretUrl(match.group(0))), text)


def job_storage(url: str) -> SecretUrl:
    """A job's storage URL: the one in its trial link, with the password the sweeper put in
    `STORAGE_PASSWORD_ENV` when the URL names a user but no password."""
    password = os.environ.get(STORAGE_PASSWORD_ENV)
    parts = urlsplit(url)
    if not password or parts.password or "@" not in parts.netloc:
        return SecretUrl(url)
    return SecretUrl(url).with_password(password)


def _with_password(url: str, password: str | None) -> str:
    """`url` with its user's password set to `password` (already encoded), or removed."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}@{hostport}" if password is None else f"{user}:{password}@{hostport}"
    return urlunsplit(parts._replace(netloc=netloc))
