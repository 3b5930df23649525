"""Server-side state of the app: pending launches (by ``state``) and sessions (by cookie).

The access token lives only here, in the process's memory, for at most ``session_minutes`` and
never longer than the token itself: not in a cookie, a URL, a log line or the database. The
browser holds two random HttpOnly cookies: one binds a pending launch to the browser that started
it (a ``state`` arriving from another browser is refused), the other names the session.
Sessions are per process; with several workers put the app behind sticky sessions (docs/smart-app.md).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from cds_service.smart.auth import SmartConfiguration

LAUNCH_COOKIE = "cds_smart_launch"
SESSION_COOKIE = "cds_smart_session"
LAUNCH_SECONDS = 600.0  # time to sign in at the EHR
MAX_ENTRIES = 10_000  # bound on memory: the oldest entries go first


@dataclass(frozen=True)
class PendingLaunch:
    iss: str
    launch: str | None
    verifier: str
    binding: str  # hash of the launch cookie of the browser that started it
    config: SmartConfiguration
    redirect_uri: str
    expires_at: float


@dataclass(frozen=True)
class Session:
    iss: str
    access_token: str
    patient: str
    user: str | None
    scope: str
    app_context: str | None
    expires_at: float

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at


T = TypeVar("T", PendingLaunch, Session)


def digest(secret: str) -> str:
    """Entries are keyed by a hash of the browser's secret, never the secret itself."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class _Expiring(Generic[T]):
    def __init__(self) -> None:
        self._items: OrderedDict[str, T] = OrderedDict()

    def put(self, key: str, item: T) -> None:
        self._items[key] = item
        self._items.move_to_end(key)
        while len(self._items) > MAX_ENTRIES:
            self._items.popitem(last=False)
        now = time.time()
        for k in [k for k, v in self._items.items() if v.expires_at <= now - 60][:100]:
            del self._items[k]

    def get(self, key: str) -> T | None:
        return self._items.get(key)

    def pop(self, key: str) -> T | None:
        return self._items.pop(key, None)


class SessionStore:
    """Pending launches and sessions of this process."""

    def __init__(self) -> None:
        self.launches: _Expiring[PendingLaunch] = _Expiring()
        self.sessions: _Expiring[Session] = _Expiring()

    def start_launch(self, state: str, launch: PendingLaunch) -> None:
        self.launches.put(digest(state), launch)

    def finish_launch(self, state: str) -> PendingLaunch | None:
        """The pending launch for ``state``, once only (a replayed callback finds nothing)."""
        found = self.launches.pop(digest(state))
        if found is None or found.expires_at <= time.time():
            return None
        return found

    def open(self, session: Session) -> str:
        """Store a session; returns the cookie value that names it."""
        secret = new_secret()
        self.sessions.put(digest(secret), session)
        return secret

    def find(self, cookie: str | None) -> Session | None:
        return self.sessions.get(digest(cookie)) if cookie else None

    def close(self, cookie: str | None) -> None:
        if cookie:
            self.sessions.pop(digest(cookie))
