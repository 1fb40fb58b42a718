"""Web UI users, their sessions and the audit log, in the collector's store.

Sessions live in the database (not in process memory) so that several collectors behind the
hospital's load balancer share them. The cookie carries a 256-bit random id; the table holds
only its SHA-256, so a copy of the database does not yield a usable cookie. A session ends at
its absolute expiry (`session_max` after login) or after `session_idle` without a request;
`last_seen` is written at most every TOUCH_EVERY_S, so a board polling every few seconds does
not turn every poll into a write.

Failed logins are rate-limited per user name and source address by counting `login_failed`
rows of the audit log: the count is shared by every collector on the database and is itself
the evidence.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.auditchain import append
from collector.config import UiConfig
from collector.schema import audit_log, users, web_sessions
from collector.store import Store, StoreError
from collector.web.passwords import dummy_hash, hash_password, verify_password

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}
"""viewer reads; operator also acts on incidents and maintenance; admin also manages users."""

LANGUAGES = ("zh-CN", "en")

TOUCH_EVERY_S = 60.0
"""`last_seen` is refreshed at most this often (the idle limit is this precise)."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    language: str | None
    created_at: datetime
    disabled_at: datetime | None

    def may(self, role: str) -> bool:
        """Whether this user holds `role` or a higher one."""
        return RANK[self.role] >= RANK[role]


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    last_seen: datetime


def session_hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


_USER_COLUMNS = [users.c[name] for name in User.__dataclass_fields__]


class Accounts:
    def __init__(self, store: Store, config: UiConfig) -> None:
        self.store = store
        self.config = config

    # -- users ------------------------------------------------------------------------------

    async def add_user(self, name: str, password: str, role: str, now: datetime, *,
                       language: str | None = None) -> User:
        _check_role(role)
        if not name or len(name) > 128 or name != name.strip():
            raise StoreError("a user name is 1-128 characters without surrounding spaces")
        if language is not None and language not in LANGUAGES:
            raise StoreError(f"language must be one of {', '.join(LANGUAGES)}")
        hashed = await asyncio.to_thread(hash_password, password)
        try:
            async with self.store.transaction() as conn:
                new_id = (await conn.execute(users.insert().values(
                    name=name, password_hash=hashed, role=role, language=language,
                    created_at=now, disabled_at=None).returning(users.c.id))).scalar_one()
        except IntegrityError:
            raise StoreError(f"user {name!r} exists") from None
        return User(id=int(new_id), name=name, role=role, language=language, created_at=now,
                    disabled_at=None)

    async def set_password(self, name: str, password: str) -> None:
        hashed = await asyncio.to_thread(hash_password, password)
        async with self.store.transaction() as conn:
            done = await conn.execute(users.update().where(users.c.name == name)
                                      .values(password_hash=hashed))
            if done.rowcount == 0:
                raise StoreError(f"no user {name!r}")
            await _end_sessions(conn, name)   # a new password ends the old one's sessions

    async def disable(self, name: str, now: datetime) -> None:
        async with self.store.transaction() as conn:
            done = await conn.execute(users.update().where(users.c.name == name,
                                                           users.c.disabled_at.is_(None))
                                      .values(disabled_at=now))
            if done.rowcount == 0:
                raise StoreError(f"no active user {name!r}")
            await _end_sessions(conn, name)

    async def set_language(self, user_id: int, language: str) -> None:
        if language not in LANGUAGES:
            raise StoreError(f"language must be one of {', '.join(LANGUAGES)}")
        async with self.store.transaction() as conn:
            await conn.execute(users.update().where(users.c.id == user_id)
                               .values(language=language))

    async def users(self) -> list[User]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(*_USER_COLUMNS).order_by(users.c.name))).all()
        return [User(*row) for row in rows]

    async def check_password(self, name: str, password: str) -> User | None:
        """The active user with this name and password, else None (same work either way)."""
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(sa.select(*_USER_COLUMNS, users.c.password_hash)
                                      .where(users.c.name == name))).first()
        stored = row.password_hash if row is not None else dummy_hash()
        good = await asyncio.to_thread(verify_password, password, stored)
        if row is None or not good or row.disabled_at is not None:
            return None
        return User(*row[:len(_USER_COLUMNS)])

    # -- sessions ---------------------------------------------------------------------------

    async def start_session(self, user: User, now: datetime) -> tuple[str, Session]:
        """A new session for `user`: the cookie value (shown to the browser only) and the
        session. Expired sessions are purged on the way."""
        cookie = secrets.token_urlsafe(32)
        session = Session(user=user, csrf_token=secrets.token_urlsafe(32), created_at=now,
                          expires_at=now + timedelta(seconds=self.config.session_max),
                          last_seen=now)
        idle_cutoff = now - timedelta(seconds=self.config.session_idle)
        async with self.store.transaction() as conn:
            await conn.execute(web_sessions.delete().where(sa.or_(
                web_sessions.c.expires_at <= now, web_sessions.c.last_seen <= idle_cutoff)))
            await conn.execute(web_sessions.insert().values(
                id_hash=session_hash(cookie), user_id=user.id, csrf_token=session.csrf_token,
                created_at=now, expires_at=session.expires_at, last_seen=now))
        return cookie, session

    async def session(self, cookie: str, now: datetime) -> Session | None:
        """The live session of this cookie, or None (unknown, expired, idle too long, or its
        user disabled)."""
        key = session_hash(cookie)
        query = (sa.select(*_USER_COLUMNS, web_sessions.c.csrf_token,
                           web_sessions.c.created_at.label("s_created"),
                           web_sessions.c.expires_at, web_sessions.c.last_seen)
                 .join(users, users.c.id == web_sessions.c.user_id)
                 .where(web_sessions.c.id_hash == key))
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        user = User(*row[:len(_USER_COLUMNS)])
        idle = timedelta(seconds=self.config.session_idle)
        if now >= row.expires_at or now >= row.last_seen + idle or user.disabled_at is not None:
            await self.end_session(cookie)
            return None
        last_seen = row.last_seen
        if (now - last_seen).total_seconds() >= TOUCH_EVERY_S:
            async with self.store.transaction() as conn:
                await conn.execute(web_sessions.update().where(web_sessions.c.id_hash == key)
                                   .values(last_seen=now))
            last_seen = now
        return Session(user=user, csrf_token=row.csrf_token, created_at=row.s_created,
                       expires_at=row.expires_at, last_seen=last_seen)

    async def end_session(self, cookie: str) -> None:
        async with self.store.transaction() as conn:
            await conn.execute(web_sessions.delete().where(
                web_sessions.c.id_hash == session_hash(cookie)))

    # -- audit ------------------------------------------------------------------------------

    async def audit(self, *, at: datetime, user: str | None, action: str, target: str,
                    detail: dict[str, Any] | None = None, address: str | None = None) -> None:
        async with self.store.transaction() as conn:
            await append(conn, audit_log, {
                "at": at, "username": user, "action": action, "target": target[:256],
                "detail": detail or {}, "address": (address or "")[:64] or None})

    async def audit_entries(self, limit: int = 200, *, action: str | None = None
                            ) -> list[dict[str, Any]]:
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if action is not None:
            query = query.where(audit_log.c.action == action)
        async with self.store.engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]

    async def login_allowed(self, name: str, address: str | None, now: datetime) -> bool:
        """Fewer than `login_attempts` failed logins for this name from this address within
        `login_window`."""
        since = now - timedelta(seconds=self.config.login_window)
        query = (sa.select(sa.func.count()).select_from(audit_log)
                 .where(audit_log.c.action == "login_failed", audit_log.c.target == name[:256],
                        audit_log.c.at >= since))
        query = query.where(audit_log.c.address.is_(None) if not address
                            else audit_log.c.address == address[:64])
        async with self.store.engine.connect() as conn:
            failed = int((await conn.execute(query)).scalar_one())
        return failed < self.config.login_attempts


async def _end_sessions(conn: AsyncConnection, name: str) -> None:
    await conn.execute(web_sessions.delete().where(
        web_sessions.c.user_id == sa.select(users.c.id).where(users.c.name == name)
        .scalar_subquery()))


def _check_role(role: str) -> None:
    if role not in RANK:
        raise StoreError(f"role must be one of {', '.join(ROLES)}")


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted CSRF token with the session's."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
