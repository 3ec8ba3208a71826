"""Benchmark (not a test): Delta Chat message latency through a sandbox relay.

Starts its own `chatmail sandbox`, configures two deltachat-rpc-server
accounts, sets up Secure-Join, then, for each gap, sends messages A -> B one
at a time with that pause between them and measures the time from the send
call to B's `IncomingMsg` event. Prints median, p90 and max per gap.

    CHATMAIL_BIN=$PWD/target/debug/chatmail .venv/bin/python tests/bench_deltachat.py \\
        [--gaps 1,3,10] [--count 100,30,20] [--no-hibernation]

`--no-hibernation` runs Dovecot as the reference chatmail relay does
(`imap_hibernate_timeout = 0`, set in the sandbox's local.conf): every IDLE
connection stays in its imap process and hears of new mail 500 ms late.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import start_sandbox, stop_sandbox  # noqa: E402
from test_deltachat import Clients, secure_join, wait_event  # noqa: E402


def percentile(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, max(0, int(round(q * len(sorted_ms))) - 1))]


def run(gaps, counts, dovecot_local=""):
    proc, relay = start_sandbox(
        "max_user_send_per_minute = 6000\nmax_user_send_burst_size = 1000\n",
        dovecot_local=dovecot_local,
    )
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="dc-bench-") as tmp:
            total = sum(c * (g + 5) for g, c in zip(gaps, counts))
            clients = Clients(relay, Path(tmp) / "accounts", deadline=120 + total)
            try:
                a, b = clients.account(), clients.account()
                # A joins B's QR code: `chat` is A's chat with B.
                chat, _ = secure_join(b, a)
                b.clear_all_events()
                for gap, count in zip(gaps, counts):
                    latencies = []
                    for i in range(count):
                        time.sleep(gap)
                        text = f"bench {gap} {i}"
                        t0 = time.perf_counter()
                        chat.send_text(text)
                        while True:
                            ev = wait_event(b, "IncomingMsg", timeout=30)
                            snap = b.get_message_by_id(ev["msgId"]).get_snapshot()
                            if snap.text == text:
                                break
                        latencies.append((time.perf_counter() - t0) * 1000)
                        assert snap.show_padlock
                        print(f"gap {gap:>4} s  {i:3d} {latencies[-1]:7.1f} ms", flush=True)
                    results[gap] = sorted(latencies)
            finally:
                clients.close()
    finally:
        stop_sandbox(proc, relay)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gaps", default="1.5", help="seconds between messages, comma list")
    p.add_argument("--count", default="100", help="messages per gap, comma list (or one)")
    p.add_argument("--no-hibernation", action="store_true",
                   help="imap_hibernate_timeout = 0, as the reference relay runs")
    a = p.parse_args()
    gaps = [float(g) for g in a.gaps.split(",")]
    counts = [int(c) for c in a.count.split(",")]
    if len(counts) == 1:
        counts *= len(gaps)
    local = "imap_hibernate_timeout = 0\n" if a.no_hibernation else ""
    results = run(gaps, counts, local)
    setting = "hibernation off" if a.no_hibernation else "shipped settings"
    for gap, ms in results.items():
        print(f"{setting}: send -> IncomingMsg, {len(ms)} messages {gap} s apart: "
              f"median {statistics.median(ms):.1f} ms, p90 {percentile(ms, 0.9):.1f} ms, "
              f"max {ms[-1]:.1f} ms, min {ms[0]:.1f} ms")


if __name__ == "__main__":
    main()
