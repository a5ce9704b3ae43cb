"""The web editor of feeds.yaml: list, add, remove and edit feeds and newsletters.

In:  the path of feeds.yaml and the admin token (``AGGREGATOR_ADMIN_TOKEN``).
Out: ``admin_routes(config_path)``, a Starlette ``Mount`` to add to the main application::

    app.router.routes.append(admin_routes(config_path))   # serves /admin/

Every change goes through ``configedit.ConfigDocument``, exactly as ``aggregator feeds …``
does: the same validation (an edit that would make the file invalid is shown back with
its problems and not written), the same comment-preserving, atomic writes, and the same
refusal to overwrite a file that changed since it was read.  Here "read" is when the page
was rendered: each form carries the file's version (its SHA-256), so an edit made on a
stale page is refused with 409 instead of silently undoing someone else's change.  Adding
a feed fetches it once first (``discovery``), like the CLI; a page that advertises several
feeds gets a page to pick one.  An edit changes only the fields the form carries (an
empty one clears its key), so a script may send just what it changes; the page's
checkbox sends ``enabled=off`` when unticked.  The checkbox and the number boxes show what
the config loader reads (``enabled: no`` unticked), and a field sent as it was shown leaves
its line as written.  A file the editor cannot read (not valid YAML, a tab inside a value)
is a 409 page with ``config check``'s words, to fix by hand.

Access: without a token of at least 16 characters in the environment the editor is off
(503).  A person signs in by posting the token to the login form, which sets a signed,
HttpOnly, SameSite=Strict session cookie limited to the editor's path (the server keeps
the session's id, so signing out ends it even for a copied cookie); a script may send
``Authorization: Bearer TOKEN`` instead.  A request without a bearer token and without a
live session (a browser) is redirected to the login page (303), whatever other
Authorization it carries (a proxy's HTTP Basic auth in front of /admin/); one with a
bearer token is a script's and is answered as such: 401 with ``WWW-Authenticate: Bearer``
and a JSON ``{"error", "message"}`` saying the token is wrong (or missing), 429 with
Retry-After when its address is locked out (below).  The token never travels in a URL and
is never logged.  Every POST made with the cookie must carry the session's CSRF token (a
hidden field), and an ``Origin`` header, when present, must be this site.  After
``SIGN_IN_FAILURES.count`` wrong tokens from one client address (sign-in form or bearer)
within ``SIGN_IN_FAILURES.window``, that address is refused (429, Retry-After) without its
token being looked at, the right one included, until the window has passed.  What was
done ("Added: URL") is shown once on the next page of the list from the session's state
on the server, never from the URL: a link (a story's, on the public front page of the
same site) cannot make the editor show a claim of its own.

Forms are read as on the public side (``web.read_small_form``): url-encoded only (else
415), at most ``MAX_FORM_BYTES`` (else 413), and only after the checks that need no body
(the sign-in form's Origin and lockout, a POST's session), so an unauthenticated request
costs nothing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import itsdangerous
import jinja2
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, Router

from aggregator.config import (
    FeedConfig,
    NewsletterConfig,
    load_config,
    load_config_text,
    resolve_feed_location,
)
from aggregator.configedit import (
    ConfigDocument,
    ConflictError,
    EditError,
    InvalidEditError,
    parse_value,
)
from aggregator.discovery import DiscoveryError, FeedChoices, FoundFeed, probe_feed
from aggregator.errors import ConfigError
from aggregator.fetch import Fetcher, make_client
from aggregator.pipeline import fetch_settings
from aggregator.web import (
    RateLimit,
    RateLimiter,
    cookie_path,
    live_settings,
    origin_of,
    read_small_form,
    relative_slash_redirects,
)

log = logging.getLogger(__name__)

TOKEN_ENV = "AGGREGATOR_ADMIN_TOKEN"  # noqa: S105 (the variable's name, not a secret)
MIN_TOKEN_LENGTH = 16
COOKIE = "aggregator_admin"
SESSION_SECONDS = 12 * 3600
# A token of 16+ characters cannot be guessed at this pace; the limit keeps logs and the
# server quiet when someone tries.
SIGN_IN_FAILURES = RateLimit(10, timedelta(minutes=15))
# The editor's forms, as the public side's (``web.read_small_form``): url-encoded only, and
# sized for a long subscriber list, not for whatever a client sends (it is read before the
# token of a sign-in is known to be right).
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 20
_FORM_REFUSALS = {
    411: "Send the form from the editor's page (the request gave no Content-Length).",
    413: f"That form is larger than any form of the editor ({MAX_FORM_BYTES // 1024} KB at most).",
    415: "The editor takes forms as application/x-www-form-urlencoded only, as its pages send them.",
}
FEED_FIELDS = ("url", "title", "topics", "interval", "priority")
NEWSLETTER_FIELDS = ("title", "schedule", "timezone", "topics", "max_stories", "sender", "subscribers")
# The fields whose box is not free text (the checkbox, the number boxes).  They are shown as
# the config loader reads them: the page cannot read ``enabled: no`` (it ticked the box) and a
# browser empties a number box holding no HTML number (``'+5'``), so the next save wrote back
# what the box said, not what the file meant.
_FEED_AS_LOADED = ("enabled", "priority")
_NEWSLETTER_AS_LOADED = ("max_stories",)
_TEMPLATES = Path(__file__).parent / "templates" / "admin"
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
_DONE = {
    "added": "Added",
    "removed": "Removed",
    "saved": "Saved",
    "signed-in": "Signed in",
}


@dataclass(frozen=True, slots=True)
class _Session:
    csrf: str | None  # None when authenticated by the Authorization header (no cookie, no CSRF)
    id: str | None = None  # the cookie's session, which signing out ends


class _LiveSessions:
    """The cookie sessions this process started and that have not ended, and the notice
    each is to see next ("Added: URL").

    A signed cookie alone would stay good until it expires, so signing out could not stop
    a copied cookie; the server keeps the ids it handed out and forgets one on sign-out.
    They live in memory: a restart signs everyone out, which only asks for the token again.
    """

    def __init__(self, lifetime: timedelta) -> None:
        self.lifetime = lifetime
        self._until: dict[str, datetime] = {}
        self._notices: dict[str, str] = {}

    def start(self, now: datetime) -> str:
        self._until = {sid: until for sid, until in self._until.items() if until > now}
        self._notices = {sid: text for sid, text in self._notices.items() if sid in self._until}
        sid = secrets.token_urlsafe(24)
        self._until[sid] = now + self.lifetime
        return sid

    def alive(self, sid: str, now: datetime) -> bool:
        until = self._until.get(sid)
        return until is not None and until > now

    def tell(self, sid: str, notice: str) -> None:
        """Keep ``notice`` for the session's next page of the list (one at a time: the latest)."""
        if sid in self._until:
            self._notices[sid] = notice

    def told(self, sid: str) -> str | None:
        """The session's notice, once."""
        return self._notices.pop(sid, None)

    def end(self, sid: str) -> None:
        self._until.pop(sid, None)
        self._notices.pop(sid, None)


class _Refused(Exception):
    """A request the editor answers with a page and a status instead of doing it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Unreadable(_Refused):
    """feeds.yaml cannot be read for editing (not valid YAML, a tab inside a value, not
    readable at all): a person must fix it by hand.  The server is fine, and so is the
    request: 409, the file's state is what stands in the way, with each problem at its line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(409, "\n".join(problems))
        self.problems = problems


class _TokenRefused(_Refused):
    """A request whose Authorization header does not sign it in: a script's, answered with
    JSON (401, or 429 for a locked-out address), never with the login page."""

    def __init__(self, status: int, error: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(status, message)
        self.error = error  # RFC 6750's code: invalid_request, invalid_token; or too_many_attempts
        self.retry_after = retry_after


def admin_routes(
    config_path: Path, *, path: str = "/admin", token: str | None = None, public_url: str | None = None
) -> Mount:
    """The editor's routes under ``path``; the token defaults to ``$AGGREGATOR_ADMIN_TOKEN``.

    ``public_url``: the site's address as readers see it (``output.base_url``).  Forms posted
    from its origin are the site's own, as on the public side: behind a reverse proxy the
    request's own scheme and host are often not those the browser used.  Mounted in the web
    side's app (``web.create_app``), the editor follows that app's live settings instead, so
    an edited ``output.base_url`` takes effect without a restart.
    """
    public_origin = origin_of(public_url) if public_url else None
    editor = _Editor(config_path, os.environ.get(TOKEN_ENV) if token is None else token, public_origin)
    router = Router(
        routes=[
            Route("/", editor.index, methods=["GET"]),
            Route("/login", editor.login_form, methods=["GET"]),
            Route("/login", editor.login, methods=["POST"]),
            Route("/logout", editor.logout, methods=["POST"]),
            Route("/feeds/add", editor.add_feed, methods=["POST"]),
            Route("/feeds/remove", editor.remove_feed, methods=["POST"]),
            Route("/feeds/edit", editor.edit_feed_form, methods=["GET"]),
            Route("/feeds/edit", editor.edit_feed, methods=["POST"]),
            Route("/newsletters/add", editor.add_newsletter, methods=["POST"]),
            Route("/newsletters/remove", editor.remove_newsletter, methods=["POST"]),
            Route("/newsletters/edit", editor.edit_newsletter_form, methods=["GET"]),
            Route("/newsletters/edit", editor.edit_newsletter, methods=["POST"]),
        ],
    )
    relative_slash_redirects(router)  # "/admin/login/": no redirect built from the Host header
    return Mount(path, app=router, name="admin")


class _Editor:
    def __init__(self, config_path: Path, token: str | None, public_origin: str | None = None) -> None:
        self.config_path = config_path
        self.public_origin = public_origin  # see admin_routes
        self.token = token if token and len(token) >= MIN_TOKEN_LENGTH else None
        if token and self.token is None:
            log.warning("web editor off: %s is shorter than %d characters", TOKEN_ENV, MIN_TOKEN_LENGTH)
        # The signing key derives from the token: changing the token signs everyone out.
        key = hmac.new((self.token or "").encode(), b"aggregator admin session", hashlib.sha256).digest()
        self.signer = itsdangerous.URLSafeTimedSerializer(key, salt="aggregator-admin-session")
        self.failures = RateLimiter(SIGN_IN_FAILURES)  # wrong tokens per client address
        self.sessions = _LiveSessions(timedelta(seconds=SESSION_SECONDS))
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    # -- plumbing ---------------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def _page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        template = self.templates.get_template(name)
        session = context.pop("session", None)
        html = template.render(
            base=self._base(request),
            csrf=session.csrf if isinstance(session, _Session) else "",
            config_name=self.config_path.name,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def _message(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self._page(request, "message.html", status, message=message, session=None)

    def _session(self, request: Request) -> _Session | None:
        """Who is signed in: by a bearer token, else by the cookie; None when nobody is.

        A request with ``Authorization: Bearer ...`` is a script's: a token that does not sign
        it in raises ``_TokenRefused`` (401, or 429 when its address is locked out) instead of
        falling back to the cookie and the login page.  Another scheme is not ours to judge:
        a proxy's HTTP Basic auth in front of /admin/ sends its header on every request of a
        browser, which signs in with its cookie as any other.
        """
        if self.token is None:
            return None
        header = request.headers.get("authorization", "")
        if header.strip().partition(" ")[0].lower() == "bearer":
            return self._bearer_session(request, header)
        cookie = request.cookies.get(COOKIE)
        return self._cookie_session(cookie) if cookie else None

    def _bearer_session(self, request: Request, header: str) -> _Session:
        given = header.strip().partition(" ")[2]
        if not given.strip():
            raise _TokenRefused(
                401,
                "invalid_request",
                f"Send the token as 'Authorization: Bearer TOKEN' (the value of {TOKEN_ENV}).",
            )
        wait = self._blocked(request)
        if wait is not None:
            log.warning("web editor: bearer token from %s refused (too many wrong tokens)", _client(request))
            minutes, retry_after = _wait_texts(wait)
            raise _TokenRefused(
                429,
                "too_many_attempts",
                f"Too many wrong tokens from your address. Try again in {minutes} minutes.",
                retry_after=retry_after,
            )
        if not self._token_ok(request, given):
            log.warning("web editor: bearer token refused from %s (wrong token)", _client(request))
            raise _TokenRefused(401, "invalid_token", f"Wrong token: it is not the value of {TOKEN_ENV}.")
        return _Session(None)

    def _signed_in(self, request: Request) -> _Session | Response:
        """The session of a page's GET, else the answer: 503 when the editor is off, the
        script's 401/429, or the login page for a browser."""
        if self.token is None:
            return self._message(
                request, 503, f"The editor is off: set {TOKEN_ENV} (at least {MIN_TOKEN_LENGTH} characters)."
            )
        try:
            session = self._session(request)
        except _TokenRefused as refused:
            return self._refused(request, refused)
        if session is None:
            return RedirectResponse(f"{self._base(request)}/login", status_code=303, headers=_HEADERS)
        return session

    def _cookie_session(self, cookie: str) -> _Session | None:
        """The session a cookie names, if it is ours, unexpired and not signed out."""
        try:
            data = self.signer.loads(cookie, max_age=SESSION_SECONDS)
        except itsdangerous.BadData:
            return None
        csrf, sid = (data.get("csrf"), data.get("sid")) if isinstance(data, dict) else (None, None)
        if (
            not isinstance(csrf, str)
            or not isinstance(sid, str)
            or not self.sessions.alive(sid, datetime.now(UTC))
        ):
            return None
        return _Session(csrf, sid)

    def _token_ok(self, request: Request, given: str) -> bool:
        """Whether ``given`` is the token; a wrong one counts against the client's address,
        and an address over ``SIGN_IN_FAILURES`` is not asked (see ``_blocked``)."""
        if self.token is None or self._blocked(request) is not None:
            return False
        if hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return True
        self.failures.hit(_client(request), datetime.now(UTC))
        return False

    def _blocked(self, request: Request) -> timedelta | None:
        """How long the client's address must wait after too many wrong tokens, if it must."""
        return self.failures.waiting(_client(request), datetime.now(UTC))

    def _same_origin(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None or (origin == "null" and request.headers.get("sec-fetch-site") == "same-origin"):
            return True
        own = f"{request.url.scheme}://{request.url.netloc}"
        return origin in (own, self._public_origin(request))

    def _public_origin(self, request: Request) -> str | None:
        """The site's public origin as feeds.yaml says now: mounted in the web side, its live
        ``output.base_url`` (a base_url edited while the server runs moves the editor with
        it, and the old address is no longer the site's), else the ``public_url`` given."""
        settings = live_settings(request)
        return origin_of(settings.base_url) if settings is not None else self.public_origin

    async def _read_form(self, request: Request) -> FormData:
        """The request's form within the editor's limits, else ``_Refused`` (411, 413, 415, 400)."""
        try:
            return await read_small_form(request, max_bytes=MAX_FORM_BYTES, max_fields=MAX_FORM_FIELDS)
        except HTTPException as exc:
            raise _Refused(exc.status_code, _FORM_REFUSALS.get(exc.status_code, str(exc.detail))) from exc

    async def _checked_form(self, request: Request) -> tuple[_Session, FormData]:
        """The form of a POST from a signed-in person, with its CSRF token checked.

        The session (and so the sign-in lockout of a bearer token) and the Origin are checked
        before the body is read, and the body only within ``MAX_FORM_BYTES``.
        """
        if self.token is None:
            raise _Refused(
                503, f"The editor is off: set {TOKEN_ENV} (at least {MIN_TOKEN_LENGTH} characters)."
            )
        session = self._session(request)
        if session is None:
            raise _Refused(401, "Sign in first.")
        stale = _Refused(403, "This form is stale or came from another site; reload the page and try again.")
        if session.csrf is not None and not self._same_origin(request):
            raise stale  # known from the headers: the body need not be read
        form = await self._read_form(request)
        if session.csrf is not None:
            given = str(form.get("csrf", ""))
            if not hmac.compare_digest(given.encode(), session.csrf.encode()):
                raise stale
        return session, form

    def _read(self) -> ConfigDocument:
        """The file as it is now, else ``_Unreadable`` saying why as ``config check`` does.

        As ``aggregator feeds …`` (``cli_feeds._refuse_unreadable``): the loader's problems,
        with their line, column and hint; only what the aggregator reads and the editor cannot
        (a tab inside a value, which it cannot turn into a space) in the editor's words.
        """
        try:
            return ConfigDocument.read(self.config_path)
        except EditError as exc:
            try:
                load_config(self.config_path)
            except ConfigError as problems:
                raise _Unreadable([str(p) for p in problems.problems]) from exc
            raise _Unreadable([str(exc)]) from exc

    def _document(self, form: FormData) -> ConfigDocument:
        """The file as it is now, refused if it is not the version the page was rendered from."""
        document = self._read()
        if str(form.get("version", "")) != document.version:
            raise _Refused(
                409,
                f"{self.config_path.name} changed since this page was loaded (edited by hand or in "
                "another window). Nothing was saved: reload to see the current file, then redo your change.",
            )
        return document

    def _redirect(self, request: Request, session: _Session, done: str, item: str = "") -> RedirectResponse:
        """Back to the list, which tells the session what was done (``_LiveSessions.tell``).

        The URL says only which kind of thing was done (``?done=added``): the text shown
        comes from the server, so a link cannot put words on the editor's page.
        """
        if session.id is not None:
            self.sessions.tell(session.id, f"{_DONE[done]}: {item}" if item else _DONE[done])
        query = urlencode({"done": done})
        return RedirectResponse(f"{self._base(request)}/?{query}", status_code=303, headers=_HEADERS)

    def _not_listed(self, request: Request, what: str, or_else: str) -> HTMLResponse:
        """The 404 of an edit link naming no (single) entry of the file.

        The link's text is not repeated: anyone can make a link, and a signed-in editor who
        follows it would see its words on the editor's own page, as if the editor said them.
        """
        return self._message(
            request,
            404,
            f"No {what} in {self.config_path.name} matches this link: it may have been removed, "
            f"or {or_else}. Pick it from the list.",
        )

    def _refused(self, request: Request, refused: _Refused) -> Response:
        if isinstance(refused, _TokenRefused):
            headers = {**_HEADERS, "WWW-Authenticate": 'Bearer realm="aggregator editor"'}
            if refused.status == 401:  # RFC 6750 3: the reason, in the challenge
                headers["WWW-Authenticate"] += f', error="{refused.error}"'
            if refused.retry_after is not None:
                headers["Retry-After"] = str(refused.retry_after)
            content = {"error": refused.error, "message": refused.message}
            return JSONResponse(content, refused.status, headers=headers)
        if refused.status == 401:
            return RedirectResponse(f"{self._base(request)}/login", status_code=303, headers=_HEADERS)
        if isinstance(refused, _Unreadable):
            return self._unreadable(request, refused)
        return self._message(request, refused.status, refused.message)

    def _unreadable(self, request: Request, refused: _Unreadable) -> HTMLResponse:
        # No "Back to the list": the list is this same page until the file is fixed by hand.
        return self._page(request, "unreadable.html", refused.status, problems=refused.problems)

    # -- signing in ---------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if self.token is None:
            return self._message(
                request, 503, f"The editor is off: set {TOKEN_ENV} (at least {MIN_TOKEN_LENGTH} characters)."
            )
        return self._page(request, "login.html", error=None)

    async def login(self, request: Request) -> Response:
        # Everything that needs no body is checked before the body is read: anyone may post
        # here, and a locked-out or cross-site request must cost the server nothing.
        if self.token is None:
            return self._message(request, 503, f"The editor is off: set {TOKEN_ENV}.")
        if not self._same_origin(request):
            return self._message(request, 403, "This form came from another site.")
        wait = self._blocked(request)
        if wait is not None:
            minutes, retry_after = _wait_texts(wait)
            log.warning("web editor: sign-in from %s refused (too many wrong tokens)", _client(request))
            refused = self._message(
                request, 429, f"Too many wrong tokens from your address. Try again in {minutes} minutes."
            )
            refused.headers["retry-after"] = str(retry_after)
            return refused
        try:
            form = await self._read_form(request)
        except _Refused as refused:
            return self._refused(request, refused)
        given = str(form.get("token", "")).strip()
        if not self._token_ok(request, given):
            log.warning("web editor: sign-in refused from %s (wrong token)", _client(request))
            return self._page(request, "login.html", 401, error="Wrong token.")
        session = _Session(secrets.token_urlsafe(24), self.sessions.start(datetime.now(UTC)))
        response = self._redirect(request, session, "signed-in")
        response.set_cookie(
            COOKIE,
            self.signer.dumps({"csrf": session.csrf, "sid": session.id}),
            max_age=SESSION_SECONDS,
            path=cookie_path(request),
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        try:
            session, _ = await self._checked_form(request)
        except _Refused as refused:
            return self._refused(request, refused)
        if session.id is not None:
            self.sessions.end(session.id)  # a copy of the cookie is worth nothing from now on
        response = RedirectResponse(f"{self._base(request)}/login", status_code=303, headers=_HEADERS)
        response.delete_cookie(COOKIE, path=cookie_path(request))
        return response

    # -- the list ---------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        session = self._signed_in(request)
        if isinstance(session, Response):
            return session
        # From the server's state only: the query's ``done`` and anything else are ignored.
        notice = self.sessions.told(session.id) if session.id is not None else None
        return self._index(request, session, notice=notice)

    def _index(
        self,
        request: Request,
        session: _Session,
        *,
        status: int = 200,
        notice: str | None = None,
        feed_errors: list[str] | None = None,
        feed_form: Mapping[str, str] | None = None,
        newsletter_errors: list[str] | None = None,
        newsletter_form: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        try:
            document = self._read()
        except _Unreadable as refused:
            return self._unreadable(request, refused)
        problems: list[str] = []
        try:
            load_config_text(document.original_text, self.config_path)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
        return self._page(
            request,
            "index.html",
            status,
            session=session,
            version=document.version,
            feeds=[_feed_texts(item) for item in document.entries("feeds")],
            newsletters=[_newsletter_texts(item) for item in document.entries("newsletters")],
            problems=problems,
            notice=notice,
            feed_errors=feed_errors or [],
            feed_form=feed_form or {},
            newsletter_errors=newsletter_errors or [],
            newsletter_form=newsletter_form or {},
        )

    # -- feeds ------------------------------------------------------------------------------

    async def add_feed(self, request: Request) -> Response:
        try:
            session, form = await self._checked_form(request)
            document = self._document(form)
        except _Refused as refused:
            return self._refused(request, refused)
        values = {key: str(form.get(key, "")).strip() for key in ("url", "title", "topics", "interval")}
        url = values["url"]
        try:
            if not url:
                raise EditError("a URL is needed")
            existing = document.duplicate_of(url)
            if existing is not None:
                raise EditError(f"already subscribed: {existing}")
            title = values["title"] or None
            if form.get("check") == "on":
                found = await self._probe(document, url)
                if isinstance(found, FeedChoices) and len(found.urls) == 1:
                    found = await self._probe(document, found.urls[0])
                if isinstance(found, FeedChoices):
                    return self._page(
                        request,
                        "pick.html",
                        session=session,
                        version=document.version,
                        choices=found,
                        form=values,
                    )
                url = found.url
                title = title or found.title or None
                existing = document.duplicate_of(url)
                if existing is not None:
                    raise EditError(f"already subscribed: {existing}")
            topics = parse_value("topics", values["topics"])
            document.add_feed(
                url,
                title=title,
                topics=topics if isinstance(topics, tuple) else (),
                interval=values["interval"] or None,
            )
            document.save()
        except ConflictError as exc:
            return self._message(request, 409, str(exc))
        except InvalidEditError as exc:
            errors = [_problem_text(p) for p in exc.problems]
            return self._index(request, session, status=400, feed_errors=errors, feed_form=values)
        except (EditError, DiscoveryError) as exc:
            return self._index(request, session, status=400, feed_errors=[str(exc)], feed_form=values)
        return self._redirect(request, session, "added", url)

    async def _probe(self, document: ConfigDocument, url: str) -> FoundFeed | FeedChoices:
        loaded = document.validate()
        settings = fetch_settings(loaded.config.polling)
        async with make_client(settings) as client:
            fetcher = Fetcher(client, settings)
            location = resolve_feed_location(url, document.base_dir)
            return await probe_feed(fetcher, url, location, datetime.now(UTC))

    async def remove_feed(self, request: Request) -> Response:
        return await self._remove(
            request, lambda document, form: document.remove_feed(str(form.get("url", "")))
        )

    async def _remove(self, request: Request, remove: Callable[[ConfigDocument, FormData], str]) -> Response:
        """A checked form that removes one thing (a feed, a newsletter) and saves the file."""
        try:
            session, form = await self._checked_form(request)
            document = self._document(form)
            removed = remove(document, form)
            document.save()
        except _Refused as refused:
            return self._refused(request, refused)
        except ConflictError as exc:
            return self._message(request, 409, str(exc))
        except EditError as exc:
            return self._message(request, 400, str(exc))
        return self._redirect(request, session, "removed", removed)

    async def edit_feed_form(self, request: Request) -> Response:
        session = self._signed_in(request)
        if isinstance(session, Response):
            return session
        try:
            document = self._read()
        except _Unreadable as refused:
            return self._unreadable(request, refused)
        try:
            index = document.find_feed(request.query_params.get("url", ""))
        except EditError:
            return self._not_listed(
                request, "feed", "its URL or title changed (or several feeds share that title)"
            )
        values = _feed_texts(document.entries("feeds")[index])
        return self._page(
            request,
            "feed_form.html",
            session=session,
            version=document.version,
            original=values["url"],
            form=values,
            errors=[],
        )

    async def edit_feed(self, request: Request) -> Response:
        try:
            session, form = await self._checked_form(request)
            document = self._document(form)
        except _Refused as refused:
            return self._refused(request, refused)
        original = str(form.get("original", ""))
        values = _sent(form, (*FEED_FIELDS, "enabled"))
        if "enabled" in values:
            values["enabled"] = _flag_text(values["enabled"])
        current: dict[str, str] = {}
        try:
            index = document.find_feed(original)
            current = _feed_texts(document.entries("feeds")[index])
            changes = {
                key: parse_value(key, value)
                for key, value in values.items()
                if value != current.get(key, "true" if key == "enabled" else "")
            }
            document.set_feed(original, changes)
            document.save()
        except ConflictError as exc:
            return self._message(request, 409, str(exc))
        except EditError as exc:
            errors = _error_texts(exc)
            return self._page(
                request,
                "feed_form.html",
                400,
                session=session,
                version=document.version,
                original=original,
                form={**current, **values},
                errors=errors,
            )
        saved = values.get("url") or original
        if document.updated_references:  # a new URL: the newsletters naming it follow, as in the CLI
            saved += "; also updated in " + ", ".join(str(r) for r in document.updated_references)
        return self._redirect(request, session, "saved", saved)

    # -- newsletters --------------------------------------------------------------------------

    async def add_newsletter(self, request: Request) -> Response:
        try:
            session, form = await self._checked_form(request)
            document = self._document(form)
        except _Refused as refused:
            return self._refused(request, refused)
        values = {key: str(form.get(key, "")).strip() for key in ("name", *NEWSLETTER_FIELDS)}
        try:
            if not values["name"]:
                raise EditError("a name is needed (lower-case letters, digits, - and _)")
            document.add_newsletter({key: parse_value(key, value) for key, value in values.items()})
            document.save()
        except ConflictError as exc:
            return self._message(request, 409, str(exc))
        except EditError as exc:
            errors = _error_texts(exc)
            return self._index(request, session, status=400, newsletter_errors=errors, newsletter_form=values)
        return self._redirect(request, session, "added", values["name"])

    async def remove_newsletter(self, request: Request) -> Response:
        def remove(document: ConfigDocument, form: FormData) -> str:
            name = str(form.get("name", ""))
            document.remove_newsletter(name)
            return name

        return await self._remove(request, remove)

    async def edit_newsletter_form(self, request: Request) -> Response:
        session = self._signed_in(request)
        if isinstance(session, Response):
            return session
        try:
            document = self._read()
        except _Unreadable as refused:
            return self._unreadable(request, refused)
        try:
            index = document.find_newsletter(request.query_params.get("name", ""))
        except EditError:
            return self._not_listed(request, "newsletter", "it was renamed")
        values = _newsletter_texts(document.entries("newsletters")[index])
        return self._page(
            request, "newsletter_form.html", session=session, version=document.version, form=values, errors=[]
        )

    async def edit_newsletter(self, request: Request) -> Response:
        try:
            session, form = await self._checked_form(request)
            document = self._document(form)
        except _Refused as refused:
            return self._refused(request, refused)
        name = str(form.get("name", ""))
        values = _sent(form, NEWSLETTER_FIELDS)
        current: dict[str, str] = {}
        try:
            index = document.find_newsletter(name)
            current = _newsletter_texts(document.entries("newsletters")[index])
            changes = {
                key: parse_value(key, value) for key, value in values.items() if value != current.get(key, "")
            }
            document.set_newsletter(name, changes)
            document.save()
        except ConflictError as exc:
            return self._message(request, 409, str(exc))
        except EditError as exc:
            errors = _error_texts(exc)
            return self._page(
                request,
                "newsletter_form.html",
                400,
                session=session,
                version=document.version,
                form={**current, "name": name, **values},
                errors=errors,
            )
        return self._redirect(request, session, "saved", name)


def _sent(form: FormData, keys: tuple[str, ...]) -> dict[str, str]:
    """The fields of ``keys`` the form carries, stripped.  An edit changes only these: a
    script that sends what it changes must not clear the rest (an empty field clears)."""
    return {key: str(form.get(key, "")).strip() for key in keys if key in form}


def _flag_text(value: str) -> str:
    """A checkbox's ``on``/``off`` (or a script's true/false, yes/no, 1/0) as the file's
    ``true``/``false``; anything else as sent, for ``parse_value`` to refuse."""
    try:
        return _text(parse_value("enabled", value))
    except EditError:
        return value


def _wait_texts(wait: timedelta) -> tuple[int, int]:
    """A lockout's wait as whole minutes for a person (rounded up) and seconds for Retry-After."""
    return max(1, -(-int(wait.total_seconds()) // 60)), max(1, int(wait.total_seconds() + 0.999))


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _text(value: object) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _texts(item: Mapping[str, object]) -> dict[str, str]:
    return {key: _text(value) for key, value in item.items()}


def _feed_texts(item: Mapping[str, object]) -> dict[str, str]:
    """A feed's fields for the page and for telling what an edit changed (see ``_FEED_AS_LOADED``)."""
    return _texts_as_loaded(FeedConfig, item, _FEED_AS_LOADED)


def _newsletter_texts(item: Mapping[str, object]) -> dict[str, str]:
    return _texts_as_loaded(NewsletterConfig, item, _NEWSLETTER_AS_LOADED)


def _texts_as_loaded(
    model: type[BaseModel], item: Mapping[str, object], keys: tuple[str, ...]
) -> dict[str, str]:
    """``item``'s fields as text, those of ``keys`` as the config loader reads them (``no`` →
    ``false``, ``'+5'`` → ``5``).  The loader's own field type reads them, so the editor has no
    list of spellings of its own; a value it refuses is shown as written (the list says the
    file has problems)."""
    texts = _texts(item)
    for key in keys:
        if key in item:
            with contextlib.suppress(ValidationError):
                texts[key] = _text(_loader_of(model, key).validate_python(item[key]))
    return texts


@functools.cache
def _loader_of(model: type[BaseModel], key: str) -> TypeAdapter[object]:
    """How the config loader reads ``model``'s field ``key`` (its type with its constraints)."""
    return TypeAdapter(model.model_fields[key].rebuild_annotation())


def _error_texts(exc: EditError) -> list[str]:
    """What a refused edit shows on the form: each problem of an invalid result, else the reason."""
    if isinstance(exc, InvalidEditError):
        return [_problem_text(p) for p in exc.problems]
    return [str(exc)]


def _problem_text(problem: Any) -> str:
    text = f"{problem.location}: {problem.message}" if problem.location else str(problem.message)
    return f"{text} ({problem.hint})" if problem.hint else text
