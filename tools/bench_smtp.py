#!/usr/bin/env python3
"""SMTP submission throughput of a chatmail sandbox relay, with and without
chatmail's milter and policy service (Python 3.11, stdlib only).

Starts its own `chatmail sandbox` in a fresh state directory under /tmp
(with the per-user send rate limit lifted, so the limiter's state is still
consulted but never throttles), creates accounts by IMAP login, then
measures messages per second from SMTP clients on the submission port
(STARTTLS + AUTH PLAIN, one session per connection, many messages per
session) until they are delivered into Dovecot (files in the recipients'
Maildir new/ + cur/), over 1 and over --conns connections:

  1. as configured: `smtpd_milters = chatmail/milter.socket`, the policy
     service at RCPT and DATA;
  2. the same, but with a second `chatmail milter` and `chatmail policy`
     started without their metrics endpoints (the sandbox's own serve
     metrics, docs/metrics.md) and Postfix pointed at them: what the
     metrics cost;
  3. the same Postfix without them (`postconf -e smtpd_milters=
     smtpd_recipient_restrictions= smtpd_data_restrictions=`, `postfix
     reload`): the limit measured in the same run.

Messages are the `encrypted-v4-seipdv1` case of `make-test-mail` (a real
OpenPGP/MIME message, PKESKs for two v4 keys + SEIPDv1), one per sender,
as generated (its size is printed); every row sends to fresh recipients. Also printed:
the median time from DATA to its 250 reply (with minus without = the
milter's added latency per message; the policy's DATA check is inside that
window too), and the RSS of `chatmail milter` and `chatmail policy` sampled
during the loaded rows.

Run as root from the repository: needs target/release/chatmail (or
--chatmail) and target/debug/examples/make-test-mail (or
--make-test-mail; `cargo build --example make-test-mail -p chatmail-e2ee
--features testmail`).
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import random
import shutil
import signal
import smtplib
import ssl
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ALNUM = string.ascii_lowercase + string.digits
DOMAIN = "chat.localhost"


def rand_localpart() -> str:
    return "".join(random.choice(ALNUM) for _ in range(9))


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is 0 (a row that delivered nothing)."""
    return a / b if b else float("nan")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(p / 100.0 * (len(v) - 1))))]


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Sandbox:
    def __init__(self, chatmail: Path, state: Path):
        self.state = state
        self.chatmail = chatmail
        self.plain: list[subprocess.Popen] = []
        state.mkdir(parents=True, exist_ok=True)
        os.chmod(state, 0o755)
        (state / "etc").mkdir(exist_ok=True)
        # Kept by the sandbox when present: the rate limit would throttle
        # us, and account creation refuses while the 1-minute load is above
        # max_load_1m (default 5), which a shared machine exceeds.
        (state / "etc" / "chatmail.ini").write_text(
            "[params]\n"
            f"mail_domain = {DOMAIN}\n"
            f"mailboxes_dir = {state}/mail/{DOMAIN}\n"
            "max_user_send_per_minute = 1000000\n"
            "max_user_send_burst_size = 100000\n"
            "max_load_1m = 1000\n"
        )
        self.log = open(state / "sandbox.out", "wb")
        self.proc = subprocess.Popen(
            [str(chatmail), "sandbox", "--state-dir", str(state)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        relay_json = state / "relay.json"
        deadline = time.monotonic() + 180
        while not relay_json.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.flush()
                sys.stderr.write((state / "sandbox.out").read_text(errors="replace")[-3000:])
                raise SystemExit("the sandbox did not start")
            time.sleep(0.2)
        self.relay = json.loads(relay_json.read_text())
        self.ctx = ssl.create_default_context(cafile=self.relay["tls_cert"])
        # The certificate names the mail domain; we connect to 127.0.0.1.
        self.ctx.check_hostname = False

    def stop(self) -> None:
        for p in self.plain:
            p.terminate()
            p.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def postfix(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True)

    def without_metrics(self) -> dict[str, int]:
        """Starts a milter and a policy service without metrics next to
        the sandbox's, as the sandbox runs its own (user vmail, group
        postfix), and points Postfix at them; returns their pids."""
        d = self.relay["postfix_config_dir"]
        pids = {}
        self.plain = []
        for name in ("milter", "policy"):
            sock = Path(self.relay["sockets"][name]).with_name(f"{name}-nometrics.socket")
            proc = subprocess.Popen(
                # The sandbox's copy of the binary: vmail can reach it.
                [str(self.state / "bin/chatmail"), name, "--config", self.relay["config"], "--listen", f"unix:{sock}"],
                user="vmail", group="postfix", stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=open(self.state / f"{name}-nometrics.log", "wb"),
            )
            self.plain.append(proc)
            deadline = time.monotonic() + 10
            while not sock.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"chatmail {name} without metrics did not start")
                time.sleep(0.05)
            pids[name] = proc.pid
        policy = "check_policy_service { unix:chatmail/policy-nometrics.socket, timeout=10s, default_action=DEFER_IF_PERMIT }"
        self.postfix(
            "postconf", "-c", d, "-e",
            "smtpd_milters=unix:chatmail/milter-nometrics.socket",
            f"smtpd_recipient_restrictions={policy}", f"smtpd_data_restrictions={policy}",
        )
        self.postfix("postfix", "-c", d, "reload")
        time.sleep(2)
        return pids

    def without_milter_and_policy(self) -> None:
        d = self.relay["postfix_config_dir"]
        self.postfix(
            "postconf", "-c", d, "-e",
            "smtpd_milters=", "smtpd_recipient_restrictions=", "smtpd_data_restrictions=",
        )
        self.postfix("postfix", "-c", d, "reload")
        # smtpd processes of the old configuration finish their sessions and
        # exit; new sessions get new processes.
        time.sleep(2)


def create_account(sb: Sandbox, addr: str, password: str) -> None:
    r = sb.relay
    with imaplib.IMAP4_SSL(r["host"], r["imaps_port"], ssl_context=sb.ctx) as m:
        m.login(addr, password)
        m.logout()


def maildir_count(mailboxes: Path, addr: str) -> int:
    n = 0
    for root, dirs, files in os.walk(mailboxes / addr):
        if os.path.basename(root) in ("new", "cur"):
            n += len(files)
    return n


def make_message(tool: Path, sender: str, rcpt: str, out: Path) -> bytes:
    subprocess.run(
        [str(tool), "--from", sender, "--to", rcpt, "--out", str(out)],
        check=True,
        capture_output=True,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(e for e in manifest if e["name"] == "encrypted-v4-seipdv1")
    return (out / entry["file"]).read_bytes()


def run_row(sb: Sandbox, senders, rcpts, conns: int, seconds: float, rss_pids: dict[str, int]):
    """`conns` sessions, session i from senders[i] to rcpts[i], sending for
    `seconds`; returns msgs/s delivered, DATA->250 latencies, peak RSS per
    daemon and errors. Every row gets fresh recipients: Maildir delivery
    slows down as new/ fills, which would favour whichever row ran first."""
    r = sb.relay
    mailboxes = Path(r["mailboxes_dir"])
    base = {a: maildir_count(mailboxes, a) for a in rcpts}
    lat: list[list[float]] = [[] for _ in range(conns)]
    sent = [0] * conns
    errors: list[str] = []
    start = threading.Event()
    t0 = time.monotonic()

    def worker(i: int) -> None:
        sender, password, msg = senders[i]
        rcpt = rcpts[i]
        try:
            s = smtplib.SMTP(r["host"], r["submission_port"], timeout=60)
            s.starttls(context=sb.ctx)
            s.login(sender, password)
            start.wait()
            end = t0 + seconds
            while time.monotonic() < end:
                code, resp = s.mail(sender)
                if code != 250:
                    raise RuntimeError(f"MAIL: {code} {resp!r}")
                code, resp = s.rcpt(rcpt)
                if code not in (250, 251):
                    raise RuntimeError(f"RCPT: {code} {resp!r}")
                t = time.monotonic()
                code, resp = s.data(msg)
                lat[i].append(time.monotonic() - t)
                if code != 250:
                    raise RuntimeError(f"DATA: {code} {resp!r}")
                sent[i] += 1
            s.quit()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{sender}: {e}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    # Sessions are set up (TLS, AUTH) before the clock starts.
    time.sleep(1.0)
    t0 = time.monotonic()
    start.set()
    peak = {name: 0 for name in rss_pids}
    while any(t.is_alive() for t in threads):
        for name, pid in rss_pids.items():
            peak[name] = max(peak[name], rss_kib(pid))
        time.sleep(0.2)
    total = sum(sent)
    delivered = 0
    last_change = time.monotonic()
    deadline = last_change + 120
    while time.monotonic() < deadline:
        now_count = sum(maildir_count(mailboxes, a) - base[a] for a in rcpts)
        if now_count != delivered:
            delivered = now_count
            last_change = time.monotonic()
        if delivered >= total:
            break
        time.sleep(0.05)
    wall = last_change - t0
    submit_wall = max(seconds, 1e-9)
    flat = [x for l in lat for x in l]
    return {
        "sent": total,
        "delivered": delivered,
        "wall": wall,
        "rate": delivered / wall if wall > 0 else 0.0,
        "submit_rate": total / submit_wall,
        "lat": flat,
        "peak_rss": peak,
        "errors": errors,
    }


def main() -> None:
    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chatmail", type=Path, default=repo / "target/release/chatmail")
    ap.add_argument(
        "--make-test-mail", type=Path, default=repo / "target/debug/examples/make-test-mail"
    )
    ap.add_argument("--seconds", type=float, default=10.0, help="sending time per row")
    ap.add_argument("--conns", type=int, default=10, help="connections of the loaded row")
    ap.add_argument("--keep", action="store_true", help="keep the state directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the sandbox needs it)")

    state = Path(tempfile.mkdtemp(prefix="bench-smtp-", dir="/tmp"))
    print(f"state dir {state}, load {load()}, {os.cpu_count()} cores", flush=True)
    sb = Sandbox(args.chatmail, state)
    try:
        pids = {k: int(v) for k, v in sb.relay["pids"].items() if k in ("milter", "policy")}
        n = max(1, args.conns)
        password = "bench-password-" + rand_localpart()
        domain = sb.relay["domain"]
        senders = [f"{rand_localpart()}@{domain}" for _ in range(n)]
        phases = ("with", "nometrics", "without")
        rows = [(phase, conns) for phase in phases for conns in (1, n)]
        # The rules only compare From with the envelope sender, so one
        # message per sender serves every row's recipients.
        rcpts = {row: [f"{rand_localpart()}@{domain}" for _ in range(row[1])] for row in rows}
        accounts = senders + [a for v in rcpts.values() for a in v]
        for a in accounts:
            create_account(sb, a, password)
        pairs = []
        gen = state / "mails"
        for i, s in enumerate(senders):
            msg = make_message(args.make_test_mail, s, rcpts[("with", n)][i], gen / str(i))
            pairs.append((s, password, msg))
        print(
            f"{len(accounts)} accounts; message encrypted-v4-seipdv1, {len(pairs[0][2])} bytes "
            f"(as generated, not padded); {args.seconds:.0f} s of sending per row",
            flush=True,
        )
        results = {}
        names = {"with": "with milter+policy", "nometrics": "  same, metrics off", "without": "without milter+policy"}
        rss_with = {}
        for phase in phases:
            if phase == "nometrics":
                rss_with = {k: rss_kib(v) for k, v in pids.items()}
                pids = sb.without_metrics()
            if phase == "without":
                sb.without_milter_and_policy()
            for conns in (1, n):
                res = run_row(sb, pairs, rcpts[(phase, conns)], conns, args.seconds, pids)
                results[(phase, conns)] = res
                rss = ", ".join(
                    f"{k} {v / 1024:.1f} MB" for k, v in res["peak_rss"].items()
                )
                print(
                    f"{names[phase]:<24} {conns:>3} conns: "
                    f"{res['rate']:7.1f} msgs/s delivered ({res['delivered']}/{res['sent']} "
                    f"in {res['wall']:.1f} s; submitted {res['submit_rate']:.1f}/s), DATA->250 p50 {pct(res['lat'], 50) * 1000:.1f} ms "
                    f"p99 {pct(res['lat'], 99) * 1000:.1f} ms; peak RSS {rss}; load {load()}",
                    flush=True,
                )
                for e in res["errors"][:5]:
                    print(f"    error: {e}", flush=True)
        print()
        for conns in (1, n):
            w, wo = results[("with", conns)], results[("without", conns)]
            rate = ratio(w["rate"], wo["rate"])
            print(
                f"{conns:>3} conns: {w['rate']:.1f} / {wo['rate']:.1f} msgs/s, "
                f"ratio {rate:.2f} (target >= 0.8); milter+policy add "
                f"{(pct(w['lat'], 50) - pct(wo['lat'], 50)) * 1000:.1f} ms to the median DATA->250"
            )
            sub = ratio(w["submit_rate"], wo["submit_rate"])
            print(
                f"           submission alone (accepted while sending): {w['submit_rate']:.1f} / "
                f"{wo['submit_rate']:.1f} msgs/s, ratio {sub:.2f}"
            )
        for conns in (1, n):
            w, off = results[("with", conns)], results[("nometrics", conns)]
            rate = ratio(w["rate"], off["rate"])
            print(
                f"{conns:>3} conns: metrics on / off {w['rate']:.1f} / {off['rate']:.1f} msgs/s, "
                f"ratio {rate:.3f} (target >= 0.98); DATA->250 p50 "
                f"{pct(w['lat'], 50) * 1000:.2f} / {pct(off['lat'], 50) * 1000:.2f} ms"
            )
        for name, pid in pids.items():
            peak_on = max(results[("with", c)]["peak_rss"][name] for c in (1, n))
            peak_off = max(results[("nometrics", c)]["peak_rss"][name] for c in (1, n))
            print(
                f"chatmail {name}: peak RSS under load, metrics on {peak_on / 1024:.1f} MB, "
                f"off {peak_off / 1024:.1f} MB (delta {(peak_on - peak_off) / 1024:+.2f} MB); "
                f"after the rows on {rss_with[name] / 1024:.1f} MB, off {rss_kib(pid) / 1024:.1f} MB"
            )
    finally:
        sb.stop()
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
