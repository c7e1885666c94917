#!/usr/bin/env python3
"""A merchant's Klarna HPP integration in Python's standard library only (no hpp-session).

It is what the README means by "a service in any language is tested against the double": a
checkout that creates the Klarna Payments session and its HPP session, a status-callback
endpoint, the redirect endpoints, a poller that reads each open session, and the money calls.
The rules it follows are the ones an integrator learns from Klarna's guides and this project's
docs:

- A callback or a redirect is a hint, whoever sent it: it only makes the session's read due now.
  Only a read (authenticated by the merchant's credentials) decides money or a release.
- Every open session is read at least every READ_GAP of Klarna's clock, so a token found by a
  read is at most that old when the order is placed (Klarna's token lives 60 minutes).
- COMPLETED with Klarna's order id: record that order. With only a token: place the order, once;
  an answer lost (5xx, timeout) is settled by reading the payment session, never by resending
  blindly. With neither: hand it to a person. CANCELLED or DISABLED: release the cart. A 404 at
  or after `expires_at`: release it as EXPIRED.
- A session with no change for TIME_LIMIT is disabled (DELETE); a 204 releases the cart as
  DISABLED, a 400 means it is final already: read it.
- Each effect on the shop carries an Idempotency-Key, "{session_id}/{kind}".

`--bug release-on-cancel` plants the classic bug: the cart is released as soon as the consumer's
browser lands on the `cancel` URL, without a read. Forged redirects then release paid carts, and
the double's truth says so.

Run it against the double (it reads the double's clock, so the sessions' 48 hours pass fast):

    python3 merchant.py --klarna http://127.0.0.1:8090 --listen 127.0.0.1:8085
"""

import argparse
import base64
import http.server
import json
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

READ_GAP = timedelta(minutes=20)
RETRY_AFTER = timedelta(minutes=1)
TIME_LIMIT = timedelta(hours=2)
CALLS_PER_SECOND = 40


RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):(\d\d))$"
)


def parse_time(text):
    """An RFC 3339 timestamp (0 to 9 fractional digits, `Z` or any `±hh:mm`), in UTC."""
    m = RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micros = int(((m.group(7) or "") + "000000")[:6])
    offset = timedelta(0)
    if m.group(9):
        sign = 1 if m.group(9) == "+" else -1
        offset = sign * timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
    local = datetime(year, month, day, hour, minute, second, micros, tzinfo=timezone.utc)
    return local - offset


class Klarna:
    """Klarna's API over HTTP Basic, within a calls-a-second budget (Klarna's limit is per
    merchant, in 1-second windows)."""

    def __init__(self, base, username, password):
        self.base = base.rstrip("/")
        pair = f"{username}:{password}".encode()
        self.auth = "Basic " + base64.b64encode(pair).decode()
        self.lock = threading.Lock()
        self.window = (0, 0)

    def _wait_for_budget(self):
        while True:
            with self.lock:
                second = int(time.monotonic())
                start, used = self.window
                if start != second:
                    self.window = (second, 1)
                    return
                if used < CALLS_PER_SECOND:
                    self.window = (start, used + 1)
                    return
            time.sleep(0.01)

    def call(self, method, path, body=None, budget=True):
        """(status, parsed JSON or None); status 0 when Klarna did not answer."""
        if budget:
            self._wait_for_budget()
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", self.auth)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                raw = answer.read()
                return answer.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            return error.code, None
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            return 0, None

    def now(self):
        """Klarna's clock: the double's."""
        status, body = self.call("GET", "/admin/clock", budget=False)
        if status != 200:
            raise RuntimeError("the double's clock does not answer")
        return parse_time(body["now"])


class Session:
    def __init__(self, session_id, payment_session_id, secret, expires_at, now):
        self.id = session_id
        self.payment_session_id = payment_session_id
        self.secret = secret
        self.expires_at = expires_at
        self.status = "WAITING"
        self.changed_at = now
        self.next_read = now + READ_GAP
        self.settled = False


class Merchant:
    def __init__(self, klarna, me, bug):
        self.klarna = klarna
        self.me = me.rstrip("/")
        self.bug = bug
        self.lock = threading.Lock()
        self.sessions = {}

    # The shop: the cart system and the order book.
    def shop(self, path, kind, session, body=None):
        request = urllib.request.Request(
            self.klarna.base + path,
            data=json.dumps(body or {}).encode(),
            method="POST",
        )
        request.add_header("Content-Type", "application/json")
        request.add_header("Idempotency-Key", f"{session.id}/{kind}")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status

    def release(self, session, reason):
        self.shop(f"/shop/carts/{session.id}/release", "release", session, {"reason": reason})
        session.settled = True

    # The checkout.
    def check_out(self):
        status, payment = self.klarna.call(
            "POST",
            "/payments/v1/sessions",
            {"purchase_country": "SE", "purchase_currency": "SEK", "order_amount": 10000},
        )
        if status != 200:
            return None
        secret = secrets.token_hex(16)
        urls = {
            "status_update": f"{self.me}/klarna/status/{{{{session_id}}}}/{secret}",
            "success": f"{self.me}/klarna/return/success/{{{{session_id}}}}",
            "failure": f"{self.me}/klarna/return/failure/{{{{session_id}}}}",
            "back": f"{self.me}/klarna/return/back/{{{{session_id}}}}",
            "cancel": f"{self.me}/klarna/return/cancel/{{{{session_id}}}}",
            "error": f"{self.me}/klarna/return/error/{{{{session_id}}}}",
        }
        payment_url = f"{self.klarna.base}/payments/v1/sessions/{payment['session_id']}"
        status, hpp = self.klarna.call(
            "POST",
            "/hpp/v1/sessions",
            {"payment_session_url": payment_url, "merchant_urls": urls},
        )
        if status != 201:
            return None
        now = self.klarna.now()
        session = Session(
            hpp["session_id"],
            payment["session_id"],
            secret,
            parse_time(hpp["expires_at"]),
            now,
        )
        # Stored before the consumer gets the page: a callback may come at once.
        with self.lock:
            self.sessions[session.id] = session
        return hpp["redirect_url"]

    # Hints: they only make a read due now.
    def hint(self, session_id):
        with self.lock:
            session = self.sessions.get(session_id)
            if session is not None and not session.settled:
                session.next_read = datetime.min.replace(tzinfo=timezone.utc)

    def redirected(self, kind, session_id):
        if self.bug == "release-on-cancel" and kind == "cancel":
            # The bug: whoever opened this URL, the cart goes.
            with self.lock:
                session = self.sessions.get(session_id)
            if session is not None:
                self.release(session, "CANCELLED")
            return
        self.hint(session_id)

    # The poller.
    def poll_forever(self):
        while True:
            try:
                now = self.klarna.now()
            except RuntimeError:
                time.sleep(0.5)
                continue
            with self.lock:
                due = sorted(
                    (s for s in self.sessions.values() if not s.settled and s.next_read <= now),
                    key=lambda s: s.next_read,
                )
            for session in due[:CALLS_PER_SECOND]:
                try:
                    self.read_and_act(session, now)
                except (OSError, ValueError, KeyError) as error:
                    # The shop or Klarna failed mid-way: nothing was marked done, so the
                    # session is read and acted on again.
                    print(f"merchant: {session.id}: {error}", file=sys.stderr)
                    session.next_read = now + RETRY_AFTER
            time.sleep(0.1)

    def read_and_act(self, session, now):
        status, body = self.klarna.call("GET", f"/hpp/v1/sessions/{session.id}")
        if status == 404 and now >= session.expires_at:
            self.release(session, "EXPIRED")
            return
        if status != 200:
            session.next_read = now + RETRY_AFTER
            return
        session.expires_at = parse_time(body["expires_at"])
        if body["status"] != session.status:
            session.status = body["status"]
            session.changed_at = now
        if session.status == "COMPLETED":
            self.completed(session, body)
        elif session.status in ("CANCELLED", "DISABLED"):
            self.release(session, session.status)
        elif now - session.changed_at >= TIME_LIMIT:
            self.disable(session, now)
        else:
            session.next_read = now + READ_GAP

    def completed(self, session, body):
        if body.get("order_id"):
            self.shop(
                f"/shop/orders/{session.id}/record",
                "record_order",
                session,
                {"order_id": body["order_id"]},
            )
            session.settled = True
        elif body.get("authorization_token"):
            self.place_order(session, body["authorization_token"])
        else:
            self.shop(f"/shop/reviews/{session.id}", "review_completion", session)
            session.settled = True

    def place_order(self, session, token):
        status, _ = self.klarna.call(
            "POST", f"/payments/v1/authorizations/{token}/order", {"order_amount": 10000}
        )
        if status in (200, 400, 404):
            # Placed; or the payment session has its order already; or the token is dead
            # (nothing to do but say so).
            if status == 404:
                print(f"merchant: the token of {session.id} was refused", file=sys.stderr)
            session.settled = True
            return
        # Unknown outcome: read the payment session, never resend blindly.
        status, payment = self.klarna.call(
            "GET", f"/payments/v1/sessions/{session.payment_session_id}"
        )
        if status == 200 and payment.get("status") == "complete":
            session.settled = True
        else:
            session.next_read = datetime.min.replace(tzinfo=timezone.utc)

    def disable(self, session, now):
        status, _ = self.klarna.call("DELETE", f"/hpp/v1/sessions/{session.id}")
        if status == 204:
            self.release(session, "DISABLED")
        else:
            # 400: final already (read it and act); otherwise try again soon.
            session.next_read = now if status == 400 else now + RETRY_AFTER


def handler_for(merchant):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body=None):
            data = json.dumps(body or {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            parts = self.path.strip("/").split("/")
            if parts == ["checkout"]:
                page = merchant.check_out()
                if page is None:
                    self.answer(502, {"error": "Klarna did not create the session"})
                else:
                    self.answer(200, {"redirect_url": page})
            elif len(parts) == 4 and parts[:2] == ["klarna", "status"]:
                # The secret in the URL could make a callback evidence; this merchant keeps it
                # simple and takes every callback, forged or not, as a hint: a read, now.
                merchant.hint(parts[2])
                self.answer(200)
            else:
                self.answer(404)

        def do_GET(self):
            parts = self.path.strip("/").split("/")
            if len(parts) == 4 and parts[:2] == ["klarna", "return"]:
                merchant.redirected(parts[2], parts[3])
                self.answer(200, {"thanks": True})
            else:
                self.answer(404)

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--klarna", default="http://127.0.0.1:8090", help="Klarna's base URL")
    parser.add_argument("--listen", default="127.0.0.1:8085", help="host:port to listen on")
    parser.add_argument("--username", default="merchant")
    parser.add_argument("--password", default="secret")
    parser.add_argument(
        "--bug",
        choices=["release-on-cancel"],
        help="plant a bug: release the cart on the cancel redirect, without a read",
    )
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    klarna = Klarna(args.klarna, args.username, args.password)
    merchant = Merchant(klarna, f"http://{args.listen}", args.bug)
    threading.Thread(target=merchant.poll_forever, daemon=True).start()
    server = http.server.ThreadingHTTPServer((host, int(port)), handler_for(merchant))
    print(f"merchant on {args.listen}, Klarna at {args.klarna}", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
