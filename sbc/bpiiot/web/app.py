"""The device manager's ASGI app: pages, the JSON API and the event stream.

:func:`create_app` builds it around a :class:`~bpiiot.web.service_api.Service`. Pages are
rendered on the server (Jinja2); a page that shows live values opens ``/events`` (server-
sent events) and updates itself; the JSON API under ``/api/`` (see ``API.md`` beside this
module) returns the same data for scripts. Board calls block on a serial round trip, so they
run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from bpiiot import iso20816
from bpiiot import messages as m
from bpiiot.board import CommandError, CommandNacked
from bpiiot.errors import BpiiotError
from bpiiot.web import forms
from bpiiot.web.auth import Auth, Session
from bpiiot.web.events import EventHub, downsample, plot_point, public_fields, report_dict
from bpiiot.web.guard import Guard
from bpiiot.web.service_api import (
    EditConflict,
    PreviewingRuleBook,
    RuleValidationError,
    Service,
)

log = logging.getLogger("bpiiot.web")

HERE = Path(__file__).resolve().parent
ZONE_COLOURS = {"A": "#2e9d46", "B": "#9bc53d", "C": "#f0a202", "D": "#d7263d"}
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE_S = 15.0


class WebState:
    """What the handlers share: the service, the event hub, the board config cache."""

    def __init__(self, service: Service, auth: Auth, history_s: float) -> None:
        self.service = service
        self.auth = auth
        self.history_s = history_s
        self.configs: dict[str, m.Config] = {}
        self.hub = EventHub(self.machine_class, history_s=history_s)
        self.hub.on_hello(self._refresh_config)

    def _refresh_config(self, board: str) -> None:
        # A hello means a reboot or reconnect: the config may have changed. Ask again from
        # a helper thread (a board call must not hold up the event stream); until the
        # answer comes, the old machine class keeps colouring the zones.
        def fetch() -> None:
            try:
                self.configs[board] = self.service.boards[board].board.get_config()
            except BpiiotError as exc:
                log.warning("board %s: cannot read its config after hello: %s", board, exc)

        threading.Thread(target=fetch, name=f"web config {board}", daemon=True).start()

    def machine_class(self, board: str) -> int | None:
        """The board's machine class code from the cached config (None if unknown yet)."""
        conf = self.configs.get(board)
        return conf.machine_class if conf is not None else None

    def backfill(self, board: str) -> None:
        """Load the stored last ``history_s`` of ``board`` into the plot points."""
        stored = self.service.store.reports_since(board, time.time() - self.history_s)
        self.hub.backfill(board, [plot_point(t, r) for t, r in stored])
        if stored:
            # A live report that came first stays (setdefault is atomic).
            t, rep = stored[-1]
            self.hub.last_report.setdefault(
                board, report_dict(board, t, rep, self.machine_class(board))
            )

    def config(self, board: str) -> m.Config | None:
        """The board's config, asked once and cached until it says hello again (blocking)."""
        conf = self.configs.get(board)
        if conf is None:
            handle = self.service.boards[board]
            if not handle.connected:
                return None
            try:
                conf = handle.board.get_config()
            except BpiiotError as exc:
                log.warning("board %s: cannot read its config: %s", board, exc)
                return None
            self.configs[board] = conf
        return conf


def _session(request: Request) -> Session:
    s: Session = request.scope["state"]["session"]
    return s


def config_version(conf: m.Config) -> str:
    """An ETag of a board config: changes whenever any setting does."""
    raw = json.dumps(asdict(conf), sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def nack_words(exc: CommandError) -> str:
    """A board's refusal in words (the nack code's name and the board's detail)."""
    if isinstance(exc, CommandNacked):
        name = m.NackCode.NAMES.get(exc.code, f"unknown code {exc.code}").replace("_", " ")
        return f"the board refused: {name}" + (f" ({exc.detail})" if exc.detail else "")
    return f"the board did not carry it out: {exc}"


# -- data as the pages and the API show it ------------------------------------------


def board_summary(st: WebState, name: str) -> dict[str, Any]:
    """One board's overview row (no board call: uses the cached config)."""
    handle = st.service.boards[name]
    hello = handle.hello
    last = st.hub.last_report.get(name)
    stats = handle.link.stats
    conf = st.configs.get(name)
    return {
        "name": name,
        "connected": handle.connected,
        "board_id": hello.board_id if hello else None,
        "firmware_version": ".".join(map(str, hello.firmware_version)) if hello else None,
        "protocol_version": ".".join(map(str, hello.protocol_version)) if hello else None,
        "boot_counter": hello.boot_counter if hello else None,
        "reboots_seen": stats.reboots,
        "uptime_s": last["board_time_ms"] / 1000 if last else None,
        "machine_class": iso20816.CLASS_CODES[conf.machine_class] if conf else None,
        "last_report": last,
    }


def history(st: WebState, name: str, since: float) -> list[dict[str, Any]]:
    """Stored reports of a board since ``since`` as report dicts (oldest first)."""
    klass = st.machine_class(name)
    return [
        report_dict(name, t, rep, klass) for t, rep in st.service.store.reports_since(name, since)
    ]


def plot_series(st: WebState, name: str, max_points: int = 1200) -> dict[str, list[Any]]:
    """Columns for uPlot: time, velocity RMS x/y/z in mm/s, and the flagged windows."""
    pts = downsample(st.hub.points(name), max_points)
    return {
        "t": [round(p[0], 3) for p in pts],
        "x": [p[1] for p in pts],
        "y": [p[2] for p in pts],
        "z": [p[3] for p in pts],
        "flagged": [p[4] for p in pts],
    }


def link_rows(st: WebState) -> list[dict[str, Any]]:
    """Per board: link counters (verified, dropped by reason, gaps, MAC failures)."""
    rows = []
    for name, handle in st.service.boards.items():
        s = handle.link.stats.as_dict()
        dropped: dict[str, int] = s["dropped"]
        rows.append(
            {
                "name": name,
                "connected": handle.connected,
                **s,
                "mac_failures": dropped.get("mac", 0) + dropped.get("unauthenticated", 0),
            }
        )
    return rows


def chain_view(st: WebState) -> dict[str, Any]:
    """The chain part of the service status, plus the outbox counts."""
    # Defensive: whatever the service puts there, no field named like a secret leaves.
    chain = public_fields(dict(st.service.status().get("chain") or {}))
    bal = chain.get("balance_wei")
    chain["balance_eth"] = None if bal is None else int(bal) / 10**18
    outbox = st.service.outbox
    chain["outbox"] = outbox.counts() if outbox is not None else {}
    return chain


def outbox_dict(entry: Any) -> dict[str, Any]:
    """An outbox entry, JSON-friendly."""
    return {
        "key": entry.key,
        "contract": entry.contract,
        "function": entry.function,
        "state": entry.state,
        "attempts": entry.attempts,
        "nonce": entry.nonce,
        "tx_hashes": list(entry.tx_hashes),
        "block_number": entry.block_number,
        "mined_hash": entry.mined_hash,
        "last_error": entry.last_error,
        "revert_reason": entry.revert_reason,
        "created": entry.created,
        "updated": entry.updated,
    }


def outbox_rows(st: WebState) -> list[dict[str, Any]]:
    """Every outbox entry (none without a wallet)."""
    outbox = st.service.outbox
    return [outbox_dict(e) for e in outbox.entries()] if outbox is not None else []


def incident_rows(st: WebState) -> list[dict[str, Any]]:
    """Incidents with the outbox entry of their action (matched by key)."""
    by_key = {e["key"]: e for e in outbox_rows(st)}
    rows = []
    for inc in st.service.store.incidents(limit=50):
        row = dict(inc)
        row["tx"] = by_key.get(str(inc.get("key")))
        rows.append(row)
    return rows


def rules_view(st: WebState) -> tuple[list[dict[str, Any]], str, Mapping[str, str]]:
    """(rules, version, states)."""
    rules, version = st.service.rules.current()
    return rules, version, st.service.rules.states()


# -- app -----------------------------------------------------------------------------


def create_app(service: Service, *, auth: Auth | None = None, history_s: float = 3600.0) -> Guard:
    """The device manager as an ASGI app (serve it with :func:`bpiiot.web.server.serve`).

    ``auth``: :meth:`Auth.local` (the default) serves loopback clients without a login;
    :meth:`Auth.with_password_file` requires one on every page and API call.
    ``history_s``: how far back the overview's plots go.
    """
    auth = auth or Auth.local()
    st = WebState(service, auth, history_s)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["zone_colours"] = ZONE_COLOURS
    templates.env.filters["ts"] = _fmt_time

    def page(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
        ctx = {
            "csrf_token": _session(request).csrf,
            "login_required": auth.login_required,
            "logged_in": auth.login_required and _session(request).logged_in,
            "boards": list(service.boards),
            "path": request.url.path,
            **ctx,
        }
        resp = templates.TemplateResponse(request, name, ctx, status_code=status)
        resp.headers["cache-control"] = "no-store"
        return resp

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        st.hub.loop = asyncio.get_running_loop()
        service.bus.subscribe(st.hub, maxsize=1000, name="web")
        # Learn the machine classes now so the first page shows zones, and fill the plots
        # with the stored last hour (before the first live report; the bus keeps order).
        for name in list(service.boards):
            await run_in_threadpool(st.config, name)
            await run_in_threadpool(st.backfill, name)
        try:
            yield
        finally:
            st.hub.loop = None
            await run_in_threadpool(service.bus.unsubscribe, st.hub, 2.0)

    # -- login -------------------------------------------------------------------

    kdf_slots = asyncio.Semaphore(2)

    async def login_page(request: Request) -> Response:
        if not auth.login_required:
            return RedirectResponse("/", 303)
        return page(request, "login.html", {"error": None, "next": _safe_next(request)})

    async def _try_login(request: Request, password: str) -> tuple[int, str | None, Session | None]:
        client = request.client.host if request.client else "?"
        # Counted before it is checked, so a burst of parallel guesses is cut off exactly
        # like a series; scrypt takes 32 MiB per check, so at most two run at a time.
        wait = auth.limiter.attempt(client)
        if wait > 0:
            request.state.retry_after = wait
            return 429, f"too many failed logins: try again in {math.ceil(wait)} s", None
        async with kdf_slots:
            ok = bool(password) and await run_in_threadpool(auth.check_password, password)
        if not ok:
            log.warning("failed web login from %s", client)
            return 401, "wrong password", None
        auth.limiter.succeeded(client)
        auth.end_session(_session(request).token)
        return 200, None, auth.new_session(logged_in=True)

    def _set_cookie(resp: Response, request: Request, s: Session) -> None:
        resp.set_cookie(
            auth.cookie_name,
            s.token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )

    async def login_submit(request: Request) -> Response:
        if not auth.login_required:
            return RedirectResponse("/", 303)
        form = await request.form()
        status, error, s = await _try_login(request, str(form.get("password") or ""))
        nxt = _safe_next(request, str(form.get("next") or "/"))
        if s is None:
            resp = page(request, "login.html", {"error": error, "next": nxt}, status)
            if status == 429:
                resp.headers["retry-after"] = str(math.ceil(request.state.retry_after))
            return resp
        resp = RedirectResponse(nxt, 303)
        _set_cookie(resp, request, s)
        return resp

    async def api_login(request: Request) -> Response:
        try:
            body = await request.json()
            password = str(body["password"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"password": "..."}'}, 400)
        if not auth.login_required:
            s = _session(request)
            return JSONResponse({"csrf_token": s.csrf})
        status, error, s2 = await _try_login(request, password)
        if s2 is None:
            headers = {}
            if status == 429:
                headers["retry-after"] = str(math.ceil(request.state.retry_after))
            return JSONResponse({"error": error}, status, headers=headers)
        resp = JSONResponse({"csrf_token": s2.csrf})
        _set_cookie(resp, request, s2)
        return resp

    async def logout(request: Request) -> Response:
        auth.end_session(_session(request).token)
        resp = RedirectResponse("/login" if auth.login_required else "/", 303)
        resp.delete_cookie(auth.cookie_name, path="/")
        return resp

    # -- overview and events -----------------------------------------------------

    def overview_data() -> dict[str, Any]:
        return {
            "boards": {
                name: {
                    "summary": board_summary(st, name),
                    "series": plot_series(st, name),
                }
                for name in service.boards
            },
            "history_s": st.history_s,
        }

    async def overview(request: Request) -> Response:
        t0 = time.perf_counter()
        data = await run_in_threadpool(overview_data)
        resp = page(request, "overview.html", {"data": data})
        # Server time of the page (data + rendering), for the browser's devtools and the bench.
        resp.headers["server-timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.1f}"
        return resp

    async def events(request: Request) -> Response:
        q = st.hub.open()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        kind, text = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: {kind}\ndata: {text}\n\n"
            finally:
                st.hub.close(q)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    # -- links ---------------------------------------------------------------------

    def links_data() -> dict[str, Any]:
        rows = link_rows(st)
        for row in rows:
            handle = service.boards[row["name"]]
            row["overruns"] = None
            if handle.connected:
                try:
                    row["overruns"] = handle.board.get_status().overruns
                except BpiiotError as exc:
                    row["status_error"] = str(exc)
        return {"links": rows, "bus": service.bus.stats(), "web_dropped": st.hub.dropped}

    async def links(request: Request) -> Response:
        return page(request, "links.html", await run_in_threadpool(links_data))

    async def api_links(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(links_data))

    # -- board ---------------------------------------------------------------------

    def board_ctx(name: str) -> dict[str, Any]:
        conf = st.config(name)
        return {
            "name": name,
            "summary": board_summary(st, name),
            "config": asdict(conf) if conf else None,
            "version": config_version(conf) if conf else "",
            "rates": iso20816.SUPPORTED_RATES,
            "classes": list(enumerate(iso20816.CLASS_CODES)),
            "channels": [("x", m.CH_X), ("y", m.CH_Y), ("z", m.CH_Z), ("temperature", m.CH_TEMP)],
            "errors": {},
            "message": None,
            "problem": None,
            "form": None,
        }

    def _board_or_404(request: Request) -> str:
        name = request.path_params["name"]
        if name not in service.boards:
            raise _NotFound(f"no board named {name!r}")
        return str(name)

    async def board_page(request: Request) -> Response:
        name = _board_or_404(request)
        return page(request, "board.html", await run_in_threadpool(board_ctx, name))

    async def board_action(request: Request) -> Response:
        name = _board_or_404(request)
        action = request.path_params["action"]
        form = {k: str(v) for k, v in (await request.form()).items()}
        status, outcome = await run_in_threadpool(_board_do, name, action, form)
        ctx = await run_in_threadpool(board_ctx, name)
        ctx.update(outcome)
        if status != 200 and action == "config":
            ctx["form"] = {k: v for k, v in form.items() if k != "csrf_token"}
        return page(request, "board.html", ctx, status)

    def _board_do(name: str, action: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        handle = service.boards[name]
        board = handle.board
        try:
            if action == "config":
                values, errors = forms.parse_config(form)
                if errors:
                    return 400, {"errors": errors, "problem": "nothing was changed"}
                current = board.get_config()
                if config_version(current) != form.get("version"):
                    st.configs[name] = current
                    return 409, {
                        "problem": "the board's configuration changed since this page was "
                        "loaded; nothing was changed: review the current values and try again"
                    }
                st.configs[name] = board.configure(**values)
                return 200, {"message": "configuration saved on the board"}
            if action == "output":
                pin, value, errors = forms.parse_output(form)
                if errors:
                    return 400, {"errors": errors, "problem": "no output was changed"}
                board.set_output(pin, value)
                return 200, {"message": f"output {pin} set {'high' if value else 'low'}"}
            if action == "reboot":
                hello = board.reboot(wait=True)
                boot = f": boot #{hello.boot_counter}" if hello else ""
                return 200, {"message": f"board rebooted{boot}"}
            if action == "key":
                key, errors = forms.parse_key(form)
                if errors or key is None:
                    return 400, {"errors": errors, "problem": "no key was provisioned"}
                board.set_key(key)
                try:
                    service.save_link_key(name, key)
                except (OSError, BpiiotError) as exc:
                    return 500, {
                        "problem": "the board and the link use the new key now, but it could "
                        f"not be saved for the next start: {exc}"
                    }
                return 200, {"message": "link key provisioned and saved (it is never shown)"}
        except CommandError as exc:
            return 502, {"problem": nack_words(exc)}
        except BpiiotError as exc:
            return 502, {"problem": f"the board could not be reached: {exc}"}
        return 404, {"problem": f"unknown action {action!r}"}

    async def api_board_action(request: Request) -> Response:
        name = _board_or_404(request)
        action = request.path_params["action"]
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, 400)
        form = {k: "on" if v is True else str(v) for k, v in body.items() if v is not False}
        if action == "config" and "version" not in form:
            form["version"] = request.headers.get("if-match", "").strip('"')
        status, outcome = await run_in_threadpool(_board_do, name, action, form)
        if status == 200:
            conf = st.configs.get(name)
            return JSONResponse(
                {"message": outcome["message"], "config": asdict(conf) if conf else None}
            )
        return JSONResponse(
            {"error": outcome.get("problem"), "errors": outcome.get("errors", {})}, status
        )

    # -- rules ---------------------------------------------------------------------

    can_preview = isinstance(service.rules, PreviewingRuleBook)

    async def rules_page(request: Request) -> Response:
        rules, version, states = await run_in_threadpool(rules_view, st)
        return page(
            request,
            "rules.html",
            {"rules": forms.rule_fields(rules), "version": version, "states": states,
             "errors": {}, "message": None, "problem": None, "can_preview": can_preview,
             "previews": {}, "history_min": round(st.history_s / 60)},
        )  # fmt: skip

    async def rules_preview(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        rules, version, states = await run_in_threadpool(rules_view, st)
        edited, errors = forms.parse_rules(rules, form)
        previews: dict[int, list[dict[str, Any]]] = {}
        status, problem = 200, None
        try:
            i = int(form.get("preview", ""))
            rule = edited[i]
        except (ValueError, IndexError):
            return Response("no such rule to preview", 400, media_type="text/plain")
        rulebook = service.rules
        if not errors and isinstance(rulebook, PreviewingRuleBook):
            since = time.time() - st.history_s
            try:
                previews[i] = await run_in_threadpool(rulebook.preview, rule, since)
            except RuleValidationError as exc:
                errors = {f"{i}.{k.split('.', 1)[1]}": v for k, v in exc.errors.items()}
        if errors:
            status, problem = 400, "cannot preview: " + forms.unplaced_errors(rules, errors)
        return page(
            request,
            "rules.html",
            {"rules": forms.rule_fields(rules, form), "version": form.get("version", version),
             "states": states, "errors": errors, "problem": problem, "can_preview": can_preview,
             "message": None if errors else "preview only: nothing was saved",
             "previews": previews, "history_min": round(st.history_s / 60)},
            status,
        )  # fmt: skip

    async def rules_submit(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        rules, version, states = await run_in_threadpool(rules_view, st)
        toggle = form.get("toggle")
        if toggle is not None:
            new, errors = forms.toggle_rule(rules, toggle)
        else:
            new, errors = forms.parse_rules(rules, form)
        status, message, problem = 200, None, None
        if not errors:
            try:
                await run_in_threadpool(service.rules.replace_rules, new, form.get("version", ""))
                message = "rules saved and applied"
            except RuleValidationError as exc:
                errors = exc.errors
            except EditConflict as exc:
                status, problem = 409, f"not saved: {exc}"
        if errors:
            status, problem = 400, "not saved: " + forms.unplaced_errors(rules, errors)
        rules2, version2, states = await run_in_threadpool(rules_view, st)
        shown = forms.rule_fields(rules2 if status == 200 else rules)
        if status == 400:
            shown = forms.rule_fields(rules, form)
        return page(
            request,
            "rules.html",
            {"rules": shown, "version": version2 if status != 400 else version,
             "states": states, "errors": errors, "message": message, "problem": problem,
             "can_preview": can_preview, "previews": {},
             "history_min": round(st.history_s / 60)},
            status,
        )  # fmt: skip

    async def api_rules(request: Request) -> Response:
        rules, version, states = await run_in_threadpool(rules_view, st)
        if request.method == "GET":
            return JSONResponse(
                {"rules": rules, "version": version, "states": dict(states)},
                headers={"etag": f'"{version}"'},
            )
        expected = request.headers.get("if-match", "").strip('"')
        if not expected:
            return JSONResponse({"error": "send If-Match with the version you edited"}, 428)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, 400)
        new = body.get("rules") if isinstance(body, dict) else None
        if not isinstance(new, list) or not all(isinstance(r, dict) for r in new):
            return JSONResponse({"error": 'send {"rules": [{...}, ...]}'}, 400)
        try:
            version = await run_in_threadpool(service.rules.replace_rules, new, expected)
        except RuleValidationError as exc:
            return JSONResponse({"error": "rules refused", "errors": exc.errors}, 400)
        except EditConflict as exc:
            return JSONResponse({"error": str(exc)}, 412)
        return JSONResponse({"version": version}, headers={"etag": f'"{version}"'})

    # -- incidents and chain -------------------------------------------------------

    def incidents_data() -> dict[str, Any]:
        return {
            "incidents": incident_rows(st),
            "chain": chain_view(st),
            "outbox": outbox_rows(st),
        }

    async def incidents(request: Request) -> Response:
        return page(request, "incidents.html", await run_in_threadpool(incidents_data))

    async def api_incidents(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(incidents_data))

    # -- other API -----------------------------------------------------------------

    async def api_status(request: Request) -> Response:
        def build() -> dict[str, Any]:
            return {
                "boards": {n: board_summary(st, n) for n in service.boards},
                "links": link_rows(st),
                "bus": service.bus.stats(),
                "chain": chain_view(st),
            }

        return JSONResponse(await run_in_threadpool(build))

    async def api_reports(request: Request) -> Response:
        name = _board_or_404(request)
        try:
            since = float(request.query_params.get("since", time.time() - st.history_s))
        except ValueError:
            return JSONResponse({"error": "since must be a Unix time in seconds"}, 400)
        return JSONResponse({"reports": await run_in_threadpool(history, st, name, since)})

    async def api_board(request: Request) -> Response:
        name = _board_or_404(request)
        ctx = await run_in_threadpool(board_ctx, name)
        return JSONResponse(
            {"summary": ctx["summary"], "config": ctx["config"]},
            headers={"etag": f'"{ctx["version"]}"'},
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, 404)
        return Response(str(exc), 404, media_type="text/plain")

    routes = [
        Route("/", overview),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/events", events),
        Route("/links", links),
        Route("/rules", rules_page, methods=["GET"]),
        Route("/rules", rules_submit, methods=["POST"]),
        Route("/rules/preview", rules_preview, methods=["POST"]),
        Route("/incidents", incidents),
        Route("/boards/{name}", board_page, methods=["GET"]),
        Route("/boards/{name}/{action}", board_action, methods=["POST"]),
        Route("/api/login", api_login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/status", api_status),
        Route("/api/links", api_links),
        Route("/api/rules", api_rules, methods=["GET", "PUT"]),
        Route("/api/incidents", api_incidents),
        Route("/api/boards/{name}", api_board),
        Route("/api/boards/{name}/reports", api_reports),
        Route("/api/boards/{name}/{action}", api_board_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={_NotFound: not_found},
    )
    app.state.web = st
    return Guard(app, auth)


class _NotFound(LookupError):
    pass


def _safe_next(request: Request, value: str | None = None) -> str:
    # Only local paths: a login link must not bounce the user to another site.
    nxt = value if value is not None else request.query_params.get("next", "/")
    return nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
