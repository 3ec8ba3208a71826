#!/usr/bin/env python3
"""IMAP login latency of a chatmail sandbox relay (Python 3.11, stdlib only).

For --accounts fresh addresses, on one TLS connection each: the round trip of
a NOOP (the floor: TLS, imap-login, loopback), then LOGIN of the new address
(account creation: rules, SHA512-CRYPT hashing, the password file), then on a
second connection LOGIN again (an existing account: lookup and hash check).
Prints p50/p90/max of each and their ratio to the NOOP round trip measured in
the same run, so passdbs (Dovecot 2.3's former dict passdb, the Lua passdb
on 2.3 and 2.4) can be compared on a busy machine (docs/dovecot-2.4.md).

    python3 tools/bench_login.py --relay-json DIR/relay.json [--accounts 200]

The relay's chatmail.ini should have max_load_1m raised on a busy machine,
or account creation is refused for load.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import ssl
import statistics
import time


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100 * len(v)))]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--relay-json", required=True)
    ap.add_argument("--accounts", type=int, default=200)
    args = ap.parse_args()
    info = json.load(open(args.relay_json))
    ctx = ssl._create_unverified_context()
    port, domain = info["imaps_port"], info["domain"]
    noop, create, login = [], [], []
    for _ in range(args.accounts):
        addr = os.urandom(8).hex()[:9] + "@" + domain
        password = os.urandom(12).hex()
        conn = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
        noop.append(timed(conn.noop))
        create.append(timed(lambda: conn.login(addr, password)))
        conn.logout()
        conn = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
        login.append(timed(lambda: conn.login(addr, password)))
        conn.logout()
    floor = statistics.median(noop)
    print(f"dovecot {info.get('dovecot_version', '?')}, {args.accounts} accounts")
    for name, values in [("NOOP", noop), ("first LOGIN (creates)", create), ("LOGIN", login)]:
        print(
            f"{name:22} p50 {statistics.median(values):7.2f} ms  p90 {pct(values, 90):7.2f} ms"
            f"  max {max(values):7.2f} ms  p50/NOOP {statistics.median(values) / floor:5.1f}"
        )


if __name__ == "__main__":
    main()
