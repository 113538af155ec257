"""The web console for release managers: server-rendered pages at ``/``.

Sign-in takes an *admin* API key and starts a session kept in Redis
(`abtest.auth.ConsoleSessions`); Flask's signed session cookie (HttpOnly, SameSite=Strict,
``Secure`` when ``SESSION_COOKIE_SECURE`` is set) carries only the session's random token
and the CSRF token, never the key.  The key is checked again on every request, so revoking
it ends its sessions; signing out, or ``CONSOLE_SESSION_SECONDS`` without a request, ends
one.  Cookies are signed with ``SECRET_KEY`` (env ``ABTEST_SECRET_KEY``) or, when it is
unset, with a random secret shared through Redis (`SharedSecretSessionInterface`).

Every POST carries the session's CSRF token (``csrf_token``, compared in constant time):
missing is 400, wrong is 403.  Start, stop and ship first show a confirmation page; its
form adds ``confirm`` (the experiment key) and ``version`` (the config version the page
showed), so a stray or stale POST changes nothing.  The ship page restates the current
verdict and its reasons; shipping anything but the verdict's variant (or with no ship
verdict) needs a written ``reason``, checked again against the verdict at the time of the
POST and kept in the audit entry.  The actions call the same `Store` methods as the JSON
API, with the console key's id, so they land in the same audit trail.

The views are marked `public` for the API's bearer-key check because they sign in their own
way (the session); `_guard` turns every unsigned request away to the sign-in page.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from itsdangerous import URLSafeTimedSerializer
from werkzeug.exceptions import HTTPException

from abtest import keys
from abtest.auth import ApiKey, Role
from abtest.errors import AbtestError, Conflict, InvalidInput, Unauthorized
from abtest.experiment import Status
from abtest.store import MAX_REASON_LENGTH, Store, StoredExperiment
from analysis.report import formatting
from service import console_alerts, console_pages
from service.extension import abtest
from service.results import segment_query
from service.security import public

bp = Blueprint("console", __name__, template_folder="templates")

SESSION_TOKEN: Final = "console_session"
SESSION_CSRF: Final = "console_csrf"
CSRF_FIELD: Final = "csrf_token"
ACTIONS: Final = ("start", "stop", "ship", "pause", "resume", "rollback")
ROLLOUT_ACTIONS: Final = ("pause", "resume", "rollback")
_SIGN_IN_ENDPOINTS: Final = frozenset({"console.login"})

# Status of each AbtestError code on console pages: the API's mapping, in HTML.
_STATUS: Final = {"invalid_input": 400, "invalid_config": 422, "not_found": 404,
                  "conflict": 409, "unauthorized": 401, "forbidden": 403}  # fmt: skip


@bp.record_once
def _configure_cookie(state: Any) -> None:
    app: Flask = state.app
    # Security requirements, not preferences: JavaScript never reads the key, and no other
    # site can make the browser send it (a second line of defence behind the CSRF token).
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    app.session_interface = SharedSecretSessionInterface()


class SharedSecretSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions; without ``SECRET_KEY``, signed by a secret in Redis.

    The secret is created once (``SET NX``) and shared by every worker and server on the
    same Redis, so a cookie signed by one gunicorn worker is valid in all of them.  Redis is
    only asked when a cookie is read or written, so API requests never wait for it.
    """

    def __init__(self) -> None:
        self._secret: str | None = None
        self._console_segments: frozenset[str] | None = None

    def _console_path(self, app: Flask, path: str) -> bool:
        """Whether ``path`` may be a console page, judged by its first segment.

        The session is opened before the URL is matched, so the blueprint is not known yet;
        the first segments of the console's own rules are (``*`` if one starts with a
        variable, which makes every path a candidate).
        """
        segments = self._console_segments
        if segments is None:
            found = set()
            for rule in app.url_map.iter_rules():
                if rule.endpoint.startswith(f"{bp.name}."):
                    first = rule.rule.split("/", 2)[1]
                    found.add("*" if "<" in first else first)
            segments = self._console_segments = frozenset(found)
        return "*" in segments or path.split("/", 2)[1] in segments

    def _shared_secret(self, app: Flask) -> str:
        if self._secret is None:
            client = app.extensions["abtest"].redis
            client.set(keys.console_secret(), secrets.token_urlsafe(32), nx=True)
            self._secret = str(client.get(keys.console_secret()))
        return self._secret

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """Flask's serializer, keyed by ``SECRET_KEY`` or else the shared secret."""
        if app.secret_key:
            return super().get_signing_serializer(app)
        return URLSafeTimedSerializer(
            self._shared_secret(app), salt=self.salt, serializer=self.serializer,
            signer_kwargs={"key_derivation": self.key_derivation,
                           "digest_method": self.digest_method},
        )  # fmt: skip

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """API paths get Flask's null session; a console page without a cookie, an empty one.

        The API never uses the session, and reading and then saving it was a measurable
        share of every API request; a null session is not saved at all.  No cookie means no
        Redis round trip for the shared secret.
        """
        if not self._console_path(app, request.path):
            return self.make_null_session(app)
        if not app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def _store() -> Store:
    return abtest().store


def csrf_token() -> str:
    """This session's CSRF token, created on first use."""
    token = session.get(SESSION_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[SESSION_CSRF] = token
    return token


def _signed_in_key() -> ApiKey | None:
    token = session.get(SESSION_TOKEN)
    if not isinstance(token, str):
        return None
    record = abtest().console_sessions.key(token)
    if record is None or record.role is not Role.ADMIN:
        session.pop(SESSION_TOKEN, None)
        return None
    return record


@bp.context_processor
def _template_globals() -> dict[str, Callable[[], str]]:
    return {"csrf_token": csrf_token}


# The report's formatting, so the console and the report print a number the same way.
for _name in ("count", "number", "percent", "p_value"):
    bp.add_app_template_filter(getattr(formatting, _name), _name)


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    if request.method == "POST":
        sent = request.form.get(CSRF_FIELD)
        if not sent:
            abort(400, "the form has no CSRF token; reload the page and try again")
        expected = session.get(SESSION_CSRF)
        if not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
            abort(403, "the form's CSRF token is not this session's; reload the page")
    if request.endpoint in _SIGN_IN_ENDPOINTS:
        return None
    g.console_key = _signed_in_key()
    if g.console_key is None:
        return redirect(url_for("console.login", next=_local_path(request.full_path)))
    return None


def _local_path(target: str | None) -> str | None:
    """``target`` if it is a path on this site (no scheme, no host), else None."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target.rstrip("?") or "/"


# The pages need no script, no other origin and no framing: a policy that allows nothing
# else makes an injected script inert and a framed confirmation page blank (OWASP Secure
# Headers Project; CSP Level 3).  Inline styles and data: images are the page's own CSS and
# figures.  no-store: admin pages stay out of shared caches and the back button after sign-out.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@bp.after_request
def _secure_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    return render_template("error.html", status=status, title=exc.name,
                           message=exc.description), status  # fmt: skip


@bp.errorhandler(AbtestError)
def _abtest_error(exc: AbtestError) -> ResponseReturnValue:
    status = _STATUS.get(exc.code, 400)
    return render_template("error.html", status=status, title=exc.code.replace("_", " "),
                           message=str(exc)), status  # fmt: skip


# -- signing in and out ------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> ResponseReturnValue:
    """The sign-in form; POST checks the key and starts a fresh session."""
    target = _local_path(request.values.get("next")) or url_for("console.experiments")
    if request.method == "GET":
        return render_template("login.html", next=target, error=None)
    token = request.form.get("api_key", "").strip()
    error, status = None, 200
    try:
        record = _store().verify_api_key(token)
        if record.role is not Role.ADMIN:
            error, status = "This is an sdk key: the console needs an admin key.", 403
    except Unauthorized as exc:
        error, status = f"Sign-in refused: {exc.message}.", 401
    if error is not None:
        return render_template("login.html", next=target, error=error), status
    # A new session (new CSRF token) on every sign-in: no token planted before it survives.
    session.clear()
    session[SESSION_TOKEN] = abtest().console_sessions.start(token)
    csrf_token()
    return redirect(target)


@bp.post("/logout")
@public
def logout() -> ResponseReturnValue:
    """End the session in Redis and forget its cookie (a copy of the cookie is worthless)."""
    token = session.get(SESSION_TOKEN)
    if isinstance(token, str):
        abtest().console_sessions.end(token)
    session.clear()
    return redirect(url_for("console.login"))


# -- pages -------------------------------------------------------------------------------------


@bp.get("/")
@public
def experiments() -> ResponseReturnValue:
    """Every experiment with its status, units per variant, SRM and verdict."""
    rows = [console_pages.summary(current_app, stored) for stored in _store().list_experiments()]
    return render_template("experiments.html", rows=rows)


@bp.get("/catalogue")  # /metrics is Prometheus'
@public
def metrics() -> ResponseReturnValue:
    """The metric catalogue, and the events received for metrics nothing knows (with the
    closest known name), as ``GET /v1/metrics`` reports them."""
    from abtest.catalogue import closest
    from service.known_metrics import mode

    ext = abtest()
    known = ext.known_metrics.names(ext.store)
    unknown = [(name, count, closest(name, known)[len("; did you mean ") :].strip("'?"))
               for name, count in ext.store.catalogue.unknown_counts().items()]  # fmt: skip
    return render_template("metrics.html", entries=ext.store.catalogue.entries(), unknown=unknown,
                           unknown_mode=mode(current_app.config))  # fmt: skip


@bp.get("/experiments/<key>")
@public
def experiment(key: str) -> ResponseReturnValue:
    """One experiment: config, progress, power, figures, history and the action buttons."""
    stored = _store().get_experiment(key)
    segment, min_units = segment_query(request.args)
    page = console_pages.detail(current_app, stored, _store().history(key), segment=segment,
                                min_segment_units=min_units)  # fmt: skip
    alerts = console_alerts.active_alerts(abtest().redis, key)
    return render_template("experiment.html", page=page, actions=_allowed_actions(stored),
                           alerts=alerts)  # fmt: skip


@bp.get("/alerts")
@public
def alerts() -> ResponseReturnValue:
    """Alerts of every experiment or one (``?experiment=``), active, resolved or all
    (``?status=``), with the webhooks and their failed deliveries."""
    page = console_alerts.alerts_page(
        abtest().redis, _store(), experiment=request.args.get("experiment") or None,
        status=request.args.get("status", "active"),
    )  # fmt: skip
    return render_template("alerts.html", page=page)


@bp.get("/holdout")
@public
def holdout() -> ResponseReturnValue:
    """The global holdout: definition, coverage, history and the cumulative effect."""
    from service.console_holdout import holdout_page

    return render_template("holdout.html", page=holdout_page(current_app))


def _allowed_actions(stored: StoredExperiment) -> dict[str, bool]:
    status = stored.experiment.status.value
    allowed = {"start": status in ("draft", "stopped"), "stop": status == "running",
               "ship": status in ("running", "stopped")}  # fmt: skip
    if stored.experiment.rollout is not None:
        from abtest.rollout_store import Rollouts

        paused = Rollouts(_store()).state(stored.experiment.key).paused
        allowed |= {"pause": status == "running" and not paused,
                    "resume": status == "running" and paused,
                    "rollback": status in ("running", "stopped")}  # fmt: skip
    return allowed


@bp.route("/experiments/<key>/<action>", methods=["GET", "POST"])
@public
def act(key: str, action: str) -> ResponseReturnValue:
    """GET: the confirmation page; POST (confirmed, same version): do it, then show the page."""
    if action not in ACTIONS:
        abort(404)
    store = _store()
    stored = store.get_experiment(key)
    variant = request.values.get("variant") if action == "ship" else None
    if action == "ship" and variant not in stored.experiment.variant_keys:
        raise InvalidInput(f"choose a variant of '{key}' to ship", "variant")
    verdict, note, against = None, "", False
    if variant is not None and stored.experiment.status in (Status.RUNNING, Status.STOPPED):
        verdict, note = console_pages.current_verdict(current_app, stored)
        against = console_pages.ships_against(verdict, variant)
    if request.method == "GET":
        return render_template("confirm.html", stored=stored, action=action, variant=variant,
                               description=_describe(stored, action, variant),
                               verdict=verdict, note=note, against=against,
                               max_reason_length=MAX_REASON_LENGTH)  # fmt: skip
    if request.form.get("confirm") != key:
        raise InvalidInput("not confirmed: use the confirmation page", "confirm")
    if request.form.get("version") != str(stored.version):
        raise Conflict(
            f"'{key}' changed since you looked (now version {stored.version}); review it again",
            "version",
        )
    key_id = g.console_key.id
    if action in ROLLOUT_ACTIONS:
        from abtest.rollout_store import Rollouts

        act_on = getattr(Rollouts(store), action)
        act_on(key, key_id=key_id, reason=request.form.get("reason", "").strip() or None)
    elif action == "start":
        store.start_experiment(key, key_id=key_id)
    elif action == "stop":
        store.stop_experiment(key, key_id=key_id)
    else:
        assert variant is not None  # checked above
        reason = request.form.get("reason", "").strip()
        if against and not reason:
            raise InvalidInput(_reason_needed(verdict, note, variant), "reason")
        store.ship_experiment(key, variant, key_id=key_id, reason=reason or None)
    return redirect(url_for("console.experiment", key=key, done=action), code=303)


def _reason_needed(verdict: Mapping[str, Any] | None, note: str, variant: str) -> str:
    if verdict is None:
        now = f"there is no verdict yet ({note})"
    else:
        shown = str(verdict["verdict"]).replace("_", " ")
        now = f"the verdict is '{shown}" + (f" {verdict['variant']}'" if verdict["variant"]
                                            else "'")  # fmt: skip
    return (f"not shipped: {now}, so shipping '{variant}' needs a reason; write it in the "
            "reason field (it is kept in the audit trail)")  # fmt: skip


def _describe(stored: StoredExperiment, action: str, variant: str | None) -> str:
    key = stored.experiment.key
    if action == "start":
        return f"Start '{key}': units will be assigned and exposures logged."
    if action == "stop":
        return f"Stop '{key}': nobody new is assigned; assigned units keep their variant."
    if action == "pause":
        return (f"Pause the rollout of '{key}': it stays at its step and the monitor does not "
                "advance it (it still rolls back on harm) until you resume it.")  # fmt: skip
    if action == "resume":
        return f"Resume the rollout of '{key}': the monitor may advance it again."
    if action == "rollback":
        return (f"Roll back '{key}': the new variant gets 0% of traffic, everyone is served "
                "control from now on, and the rollout ends.")  # fmt: skip
    return f"Ship '{variant}' of '{key}': every unit gets '{variant}' from now on."
