"""Storage and tracking URLs as they may be shown: never with their password.

A database or server URL can carry credentials (`postgresql+psycopg://user:secret@host/db`,
`http://user:secret@host:5000`). Every URL the project logs, tags, echoes in an override or
writes to a file goes through `mask_url`. `strip_password` takes the secret out of a URL that
is handed to another process (a trial's job), which puts it back with
`storage_password_from_env`.
"""

from __future__ import annotations

import os
from urllib.parse import quote, unquote, urlsplit, urlunsplit

MASK = "***"
# How a job gets back the storage password the sweeper kept out of its config: the sweeper
# sets it in its own environment before launching anything, and launcher processes
# (joblib, submitit) inherit it.
STORAGE_PASSWORD_ENV = "FMNIST_HPO_STORAGE_PASSWORD"


def mask_url(url: str | None) -> str:
    """`url` with any password replaced by `***` (None -> "memory", an in-memory store)."""
    if url is None:
        return "memory"
    if not urlsplit(url).password:
        return url
    return _with_netloc_password(url, MASK)


def strip_password(url: str) -> tuple[str, str | None]:
    """(`url` without its password, the password (decoded) or None)."""
    password = urlsplit(url).password
    if not password:
        return url, None
    return _with_netloc_password(url, None), unquote(password)


def storage_password_from_env(url: str) -> str:
    """`url` with the password from `STORAGE_PASSWORD_ENV` put back, when it has none."""
    password = os.environ.get(STORAGE_PASSWORD_ENV)
    if not password or urlsplit(url).password or "@" not in urlsplit(url).netloc:
        return url
    return _with_netloc_password(url, quote(password, safe=""))


def _with_netloc_password(url: str, password: str | None) -> str:
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}@{hostport}" if password is None else f"{user}:{password}@{hostport}"
    return urlunsplit(parts._replace(netloc=netloc))


def redact(text: str, url: str | None) -> str:
    """`text` (an error message, say) with `url`'s password, if any, replaced by `***`."""
    if url is None:
        return text
    password = urlsplit(url).password
    for secret in {password, unquote(password)} if password else ():
        text = text.replace(secret, MASK)
    return text
