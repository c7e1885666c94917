#!/usr/bin/env python3
"""Runs merchant.py against the double and judges it by the double's truth.

    python3 examples/python-merchant/check.py target/debug/klarna-double

Two runs, on loopback, each with the double's consumers checking out at the merchant (opening
their pages as people do) and an adversary forging callbacks and redirects for every session:

1. the merchant as written: the double's verdict must end `ok`;
2. the merchant with its planted bug (`--bug release-on-cancel`), on a clock 3000 times the
   wall's so that the adversary's redirects, spread over the sessions' 48 hours, all come: the
   truth must count paid carts released (the run stops at the first: no wait mends it).

Exits 0 when both hold, 1 otherwise, printing both verdicts.
"""

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUTS = 60
SPEED = 600
BUG_SPEED = 3000
DEADLINE_S = 240


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def paid_released(line):
    found = re.search(r"paid carts released (\d+)", line or "")
    return int(found.group(1)) if found else 0


def truth(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/truth", timeout=5) as answer:
        return json.load(answer)


def truth_paid_released(port):
    try:
        return truth(port)["paid_released"]
    except (OSError, ValueError, KeyError):
        return 0


def last_line(port):
    t = truth(port)
    return (
        f"{t['sessions']} sessions: paid carts released {t['paid_released']}, "
        f"wrong {t['wrong']}, unsettled {t['unsettled']}: NOT OK"
    )


def run(double, bug):
    """The double's verdict line once every session settled; with the bug planted, the truth once
    a paid cart was released (no wait mends that), however long after the sessions settled.
    `None` if neither came within the deadline."""
    klarna_port, merchant_port = free_port(), free_port()
    merchant_args = [
        sys.executable,
        os.path.join(HERE, "merchant.py"),
        "--klarna",
        f"http://127.0.0.1:{klarna_port}",
        "--listen",
        f"127.0.0.1:{merchant_port}",
    ]
    if bug:
        merchant_args += ["--bug", bug]
    merchant = subprocess.Popen(merchant_args)
    double = subprocess.Popen(
        [
            double,
            "--listen",
            f"127.0.0.1:{klarna_port}",
            "--speed",
            # The bug run lives the sessions' whole 48 hours (a forged redirect may come at any
            # time in them) in about a minute.
            str(BUG_SPEED if bug else SPEED),
            "--forged",
            "1000",
            "--checkout-url",
            f"http://127.0.0.1:{merchant_port}/checkout",
            "--checkouts",
            str(CHECKOUTS),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in double.stderr], daemon=True
    ).start()
    verdict = None
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                line = ""
            if line.startswith("klarna-double on"):
                print(line.strip())
            if line.startswith("settled: ") and not bug:
                verdict = line.strip()
                break
            if bug and truth_paid_released(klarna_port) > 0:
                verdict = last_line(klarna_port)
                break
    finally:
        double.kill()
        merchant.kill()
        double.wait()
        merchant.wait()
    return verdict


def main():
    double = sys.argv[1] if len(sys.argv) > 1 else "target/debug/klarna-double"
    correct = run(double, None)
    print(f"merchant.py: {correct}")
    planted = run(double, "release-on-cancel")
    print(f"merchant.py --bug release-on-cancel: {planted}")
    ok = True
    if correct is None or not correct.endswith(": ok"):
        print("FAIL: the merchant as written did not pass the double's truth")
        ok = False
    if planted is None or planted.endswith(": ok") or paid_released(planted) == 0:
        print("FAIL: the planted bug was not caught (paid carts released 0)")
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
