"""Benchmark (not a test): Delta Chat message latency through a sandbox relay.

Starts its own `chatmail sandbox`, configures two deltachat-rpc-server
accounts, sets up Secure-Join, then sends N messages A -> B one at a time with
a pause between them (the core paces its own sending: a burst of 3, then about
one a second) and measures the time from the send call to B's `IncomingMsg`
event. Prints median, p90 and max.

    CHATMAIL_BIN=$PWD/target/debug/chatmail .venv/bin/python tests/bench_deltachat.py [N] [PAUSE]
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import start_sandbox, stop_sandbox  # noqa: E402
from test_deltachat import Clients, secure_join, wait_event  # noqa: E402


def main(count=100, pause=1.5):
    proc, relay = start_sandbox(
        "max_user_send_per_minute = 6000\nmax_user_send_burst_size = 1000\n"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="dc-bench-") as tmp:
            clients = Clients(relay, Path(tmp) / "accounts",
                              deadline=120 + count * (pause + 5))
            try:
                a, b = clients.account(), clients.account()
                # A joins B's QR code: `chat` is A's chat with B.
                chat, _ = secure_join(b, a)
                b.clear_all_events()
                latencies = []
                for i in range(count):
                    time.sleep(pause)
                    text = f"bench {i}"
                    t0 = time.perf_counter()
                    chat.send_text(text)
                    while True:
                        ev = wait_event(b, "IncomingMsg", timeout=30)
                        snap = b.get_message_by_id(ev["msgId"]).get_snapshot()
                        if snap.text == text:
                            break
                    latencies.append(time.perf_counter() - t0)
                    assert snap.show_padlock
                    print(f"{i:3d} {latencies[-1] * 1000:7.1f} ms", flush=True)
            finally:
                clients.close()
    finally:
        stop_sandbox(proc, relay)
    ms = sorted(x * 1000 for x in latencies)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * len(ms))) - 1)]
    print(f"send -> IncomingMsg over {len(ms)} messages, {pause} s apart: "
          f"median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms, "
          f"max {ms[-1]:.1f} ms, min {ms[0]:.1f} ms")
    return ms


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 100, float(args[1]) if len(args) > 1 else 1.5)
