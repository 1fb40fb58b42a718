"""Logging in and out, the session cookie, role checks and CSRF checks of the web UI.

- The session cookie (`wardwatch_session`) is `HttpOnly; SameSite=Strict; Path=/`, plus
  `Secure` when the collector serves TLS. It holds a random id; the store keeps its hash.
- Every state-changing request (POST) must carry the session's CSRF token, in the form field
  `csrf_token` or the header `X-CSRF-Token`; the login form carries a token bound to a
  short-lived cookie (double submit), since there is no session yet.
- Roles are ranked viewer < operator < admin; a view names the least role it needs.
- Logins, failed logins, refused (rate-limited) logins and logouts go to the audit log.

The JSON API under /api/v1 keeps its own model (agent bearer tokens for ingest, the admin
token or loopback for writes); these cookies grant nothing there.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from collector.app import CONFIG_KEY
from collector.store import utcnow
from collector.web.accounts import LANGUAGES, RANK, Accounts, Role, Session, same_token
from collector.web.i18n import Translator
from collector.web.render import SECURITY_HEADERS, render

SESSION_COOKIE = "wardwatch_session"
LOGIN_COOKIE = "wardwatch_login"
LANG_COOKIE = "wardwatch_lang"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"

ACCOUNTS_KEY = web.AppKey("web_accounts", Accounts)

View = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def client_address(request: web.Request) -> str | None:
    return request.remote


def language(request: web.Request, session: Session | None) -> str:
    """`?lang=` first, then the browser's remembered choice, the user's own, the config's."""
    for choice in (request.query.get("lang"), request.cookies.get(LANG_COOKIE),
                   session.user.language if session else None):
        if choice in LANGUAGES:
            return choice
    return request.app[CONFIG_KEY].language


def base_context(request: web.Request, session: Session | None) -> dict[str, Any]:
    lang = language(request, session)
    return {"t": Translator(lang), "lang": lang, "user": session.user if session else None,
            "csrf": session.csrf_token if session else "", "path": request.path,
            "may": (lambda role: session is not None and session.user.may(role)),
            "refresh_s": request.app[CONFIG_KEY].ui.refresh}


async def current_session(request: web.Request) -> Session | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    return await request.app[ACCOUNTS_KEY].session(cookie, utcnow())


async def submitted_csrf(request: web.Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def page(role: Role, *, json: bool = False) -> Callable[[View], Handler]:
    """A view that needs a live session of at least `role`; POSTs need the CSRF token.

    Without a session a page redirects to the login form (a JSON endpoint answers 401)."""
    def wrap(view: View) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            session = await current_session(request)
            if session is None:
                if json:
                    return web.json_response({"error": "login required"}, status=401)
                if request.method == "GET":
                    raise web.HTTPSeeOther(f"/login?next={_quote(request.path_qs)}")
                raise web.HTTPSeeOther("/login")
            if request.method == "POST" and not same_token(await submitted_csrf(request),
                                                          session.csrf_token):
                return refusal(request, session, 403, "csrf_failed")
            if RANK[session.user.role] < RANK[role]:
                return refusal(request, session, 403, "forbidden")
            response = await view(request, session)
            await _remember_language(request, session, response)
            return response

        handler.__name__ = view.__name__
        handler.__doc__ = view.__doc__
        return handler

    return wrap


def refusal(request: web.Request, session: Session | None, status: int, key: str
            ) -> web.Response:
    context = base_context(request, session)
    return render(request, "error.html", {**context, "status": status,
                                          "message": context["t"](key)}, status=status)


async def _remember_language(request: web.Request, session: Session | None,
                             response: web.StreamResponse) -> None:
    chosen = request.query.get("lang")
    if chosen not in LANGUAGES:
        return
    response.set_cookie(LANG_COOKIE, chosen, httponly=True, samesite="Strict",
                        secure=request.secure, path="/", max_age=365 * 86400)
    if session is not None and session.user.language != chosen:
        await request.app[ACCOUNTS_KEY].set_language(session.user.id, chosen)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


def _safe_next(value: str | None) -> str:
    # only a path on this site: never `//evil.example` or `https://…` (open redirect); no
    # control characters either: URL parsers (browsers, yarl) drop tabs and newlines, so
    # `/\t/evil.example` would become `//evil.example` in the Location header
    if (not value or not value.startswith("/") or value.startswith("//") or "\\" in value
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)):
        return "/"
    return value


async def login_form(request: web.Request) -> web.StreamResponse:
    session = await current_session(request)
    if session is not None:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    return _login_page(request, None, 200)


def _login_page(request: web.Request, error_key: str | None, status: int,
                name: str = "") -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    context = base_context(request, None)
    response = render(request, "login.html", {
        **context, "login_token": token, "next": _safe_next(request.query.get("next")),
        "error": context["t"](error_key) if error_key else None, "name": name},
        status=status)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict",
                        secure=request.secure, path="/login", max_age=3600)
    if request.query.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, request.query["lang"], httponly=True,
                            samesite="Strict", secure=request.secure, path="/",
                            max_age=365 * 86400)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    accounts = request.app[ACCOUNTS_KEY]
    config = request.app[CONFIG_KEY].ui
    now = utcnow()
    address = client_address(request)
    token, expected = form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE)
    if not isinstance(token, str) or expected is None or not same_token(token, expected):
        return refusal(request, None, 403, "csrf_failed")
    name = str(form.get("name", "")).strip()[:128]
    password = str(form.get("password", ""))
    if not await accounts.login_allowed(name, address, now):
        await accounts.audit(at=now, user=None, action="login_refused", target=name,
                             detail={"reason": "rate_limited",
                                     "limit": config.login_attempts,
                                     "window_s": config.login_window}, address=address)
        return _login_page(request, "too_many_logins", 429, name)
    user = await accounts.check_password(name, password)
    if user is None:
        await accounts.audit(at=now, user=None, action="login_failed", target=name,
                             address=address)
        return _login_page(request, "bad_login", 401, name)
    cookie, session = await accounts.start_session(user, now)
    await accounts.audit(at=now, user=user.name, action="login", target=user.name,
                         detail={"role": user.role,
                                 "expires_at": session.expires_at.isoformat()},
                         address=address)
    response = web.HTTPSeeOther(_safe_next(str(form.get("next", "/"))),
                                headers=SECURITY_HEADERS)
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="Strict",
                        secure=request.secure, path="/", max_age=int(config.session_max))
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


@page("viewer")
async def logout(request: web.Request, session: Session) -> web.StreamResponse:
    cookie = request.cookies.get(SESSION_COOKIE, "")
    await request.app[ACCOUNTS_KEY].end_session(cookie)
    await request.app[ACCOUNTS_KEY].audit(at=utcnow(), user=session.user.name,
                                          action="logout", target=session.user.name,
                                          address=client_address(request))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response
