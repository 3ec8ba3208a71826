"""Benchmark (not a test): Delta Chat message latency through sandbox relays.

Starts its own `chatmail sandbox`, configures two deltachat-rpc-server
accounts, sets up Secure-Join, then, for each gap, sends messages A -> B one
at a time with that pause between them and measures the time from the send
call to B's `IncomingMsg` event. Prints median, p90 and max per gap.

    CHATMAIL_BIN=$PWD/target/debug/chatmail .venv/bin/python tests/bench_deltachat.py \\
        [--gaps 1,3,10] [--count 100,30,20] [--no-hibernation] [--cross-relay]

`--no-hibernation` runs Dovecot as the reference chatmail relay does
(`imap_hibernate_timeout = 0`, set in the sandbox's local.conf): every IDLE
connection stays in its imap process and hears of new mail 500 ms late.

`--cross-relay` also starts the two federated relays of
tests/test_federation.py (port 25 between them with STARTTLS, DKIM signing
and strictly aligned verification, keys from a real DNS server), with one
client on each, and measures that path next to the same-relay one: the two
paths take turns message by message, so both see the same machine load.
"""

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_federation  # noqa: E402
from conftest import start_sandbox, stop_sandbox  # noqa: E402
from test_deltachat import Clients, secure_join, wait_event  # noqa: E402

BENCH_LIMITS = "max_user_send_per_minute = 6000\nmax_user_send_burst_size = 1000\n"


def percentile(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, max(0, int(round(q * len(sorted_ms))) - 1))]


def send_and_wait(chat, receiver, text):
    """Milliseconds from sending `text` in `chat` to its `IncomingMsg` at `receiver`."""
    t0 = time.perf_counter()
    chat.send_text(text)
    while True:
        ev = wait_event(receiver, "IncomingMsg", timeout=60)
        snap = receiver.get_message_by_id(ev["msgId"]).get_snapshot()
        if snap.text == text:
            break
    ms = (time.perf_counter() - t0) * 1000
    assert snap.show_padlock
    return ms


def start_network(dovecot_local):
    """tests/test_federation.py's two relays and DNS server; `dovecot_local`
    goes to both relays' Dovecot (its relays take no such argument)."""
    if not dovecot_local:
        return test_federation.Network()
    plain = test_federation.start_sandbox
    test_federation.start_sandbox = lambda *a, **kw: plain(*a, dovecot_local=dovecot_local, **kw)
    try:
        return test_federation.Network()
    finally:
        test_federation.start_sandbox = plain


def run(gaps, counts, dovecot_local="", cross_relay=False):
    """{path: {gap: sorted latencies in ms}} for "same relay" and, with
    `cross_relay`, "cross relay"."""
    proc, relay = start_sandbox(BENCH_LIMITS, dovecot_local=dovecot_local)
    net = None
    clients = []
    results = {}
    try:
        if cross_relay:
            net = start_network(dovecot_local)
        with tempfile.TemporaryDirectory(prefix="dc-bench-") as tmp:
            paths = 2 if cross_relay else 1
            total = paths * sum(c * (g + 5) for g, c in zip(gaps, counts))

            def on(r, name):
                c = Clients(r, Path(tmp) / name, deadline=300 + total)
                clients.append(c)
                return c

            same = on(relay, "same")
            # Each path: (name, A's chat with B, B); A joins B's QR code.
            a, b = same.account(), same.account()
            routes = [("same relay", secure_join(b, a)[0], b)]
            if cross_relay:
                a, b = on(net.a, "a").account(), on(net.b, "b").account()
                routes.append(("cross relay", secure_join(b, a, timeout=60)[0], b))
            for _, _, receiver in routes:
                receiver.clear_all_events()
            for gap, count in zip(gaps, counts):
                for i in range(count):
                    for name, chat, receiver in routes:
                        time.sleep(gap)
                        ms = send_and_wait(chat, receiver, f"bench {name} {gap} {i}")
                        results.setdefault(name, {}).setdefault(gap, []).append(ms)
                        print(f"{name:11} gap {gap:>4} s  {i:3d} {ms:7.1f} ms", flush=True)
            if cross_relay:
                # The cross-relay messages went over port 25 and passed B's DKIM check.
                pattern = rf"DKIM pass: d={test_federation.A} aligned with From"
                assert re.search(pattern, test_federation.log(net.b, "milter"))
    finally:
        # Every step runs even when an earlier one raises (a relay that died).
        try:
            for c in clients:
                c.close()
        finally:
            try:
                if net is not None:
                    net.close()
            finally:
                stop_sandbox(proc, relay)
    return {name: {g: sorted(ms) for g, ms in by_gap.items()} for name, by_gap in results.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gaps", default="1.5", help="seconds between messages, comma list")
    p.add_argument("--count", default="100", help="messages per gap, comma list (or one)")
    p.add_argument("--no-hibernation", action="store_true",
                   help="imap_hibernate_timeout = 0, as the reference relay runs")
    p.add_argument("--cross-relay", action="store_true",
                   help="also measure between two federated relays (port 25, DKIM, DNS)")
    a = p.parse_args()
    gaps = [float(g) for g in a.gaps.split(",")]
    counts = [int(c) for c in a.count.split(",")]
    if len(counts) == 1:
        counts *= len(gaps)
    local = "imap_hibernate_timeout = 0\n" if a.no_hibernation else ""
    results = run(gaps, counts, local, a.cross_relay)
    setting = "hibernation off" if a.no_hibernation else "shipped settings"
    for gap in gaps:
        for name, by_gap in results.items():
            ms = by_gap[gap]
            print(f"{setting}, {name}: send -> IncomingMsg, {len(ms)} messages {gap} s apart: "
                  f"median {statistics.median(ms):.1f} ms, p90 {percentile(ms, 0.9):.1f} ms, "
                  f"max {ms[-1]:.1f} ms, min {ms[0]:.1f} ms")
        if "cross relay" in results:
            ratio = (statistics.median(results["cross relay"][gap])
                     / statistics.median(results["same relay"][gap]))
            print(f"{setting}: cross relay / same relay median at {gap} s: {ratio:.2f}")


if __name__ == "__main__":
    main()
