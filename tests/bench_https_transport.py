"""Benchmark (not a test): relay-to-relay mail over HTTPS (POST /mxdeliv)
against SMTP on port 25, between sandbox relays.

Starts three relays as tests/test_https_transport.py does (unbound serving
their DKIM keys): A reaches B over HTTPS only, and C over SMTP (A's peer
entry for C names an HTTPS address that is a closed port: the HTTPS try is
refused at once). Then:

1. Latency: a logged-in SMTP submission session at A sends to an account
   at B (HTTPS) and to accounts at C, the channels taking turns message by
   message so all see the same machine load; each message is timed from
   MAIL FROM to its file appearing in the recipient's Maildir (polled
   every 2 ms). All channels pass A's transport service; for C it hands
   the message back to Postfix's SMTP client. Three channels:
   - HTTPS: A -> B, POST /mxdeliv.
   - fallback: A -> C with an HTTPS try first, refused, then SMTP in the
     same delivery attempt. After one delivery over SMTP, A's transport
     takes C as "SMTP only" for 30 minutes and makes no HTTPS try; it
     keeps that in memory only, so each fallback sample starts by killing
     A's transport (SIGKILL: the sandbox starts it again, as systemd
     does), waiting until both its sockets answer, then sending one
     message to B that is not timed (the new process's first delivery,
     which sets up what a fresh process sets up once).
   - SMTP: A -> C once C is "SMTP only": no HTTPS try.
   The extra delay of a fallback is each fallback sample minus the SMTP
   channel's median (also shown: minus the SMTP sample of its round): a
   fallback to SMTP must not wait for a queue retry. A's transport.log is checked: every fallback
   message logged a refused HTTPS try, every SMTP one "SMTP only for now".
2. Throughput: messages from A's user, DKIM-signed with A's key, POSTed to
   B's /mxdeliv (one keep-alive TLS connection per worker), and the same
   messages sent to B's port 25 (STARTTLS, one SMTP session per worker), at
   1 and 10 concurrent connections for a fixed window each: accepted
   messages (HTTP 200, SMTP 250) per second. Between windows the script
   waits until B has delivered everything accepted so far.
3. Memory: VmHWM of B's `chatmail mxdeliv` under 40 concurrent POSTs of
   one large signed message (the peak is reset before, through
   /proc/PID/clear_refs, so phases 1 and 2 do not count), against 64 MB;
   `chatmail milter`'s for comparison.

    CHATMAIL_BIN=$PWD/target/debug/chatmail .venv/bin/python tests/bench_https_transport.py \\
        [--count 40] [--fallback-count 15] [--window 10] [--big-count 40] \\
        [--big-extra 10000000] [--quick]

`--quick`: 10 messages per channel (5 fallbacks), 3 s windows, 10 large
POSTs. The client is Python (threads, one process): at 10 connections it
competes with the relays for the machine's cores, the same way for both
channels.

The large message of phase 3 is made with `--big-extra` bytes of payload:
base64 makes the default 10 MB a 13.8 MB message on the wire
(`--big-extra 7300000` for 10 MB on the wire).

Figures of one run with the defaults (debug build, 2 cores shared with
compilers, load average 4 to 6; 244 s, of which 120 s phase 3):

    latency, submission at A -> Maildir      median     p90     max
      HTTPS    A -> B, 40 messages           97.6ms  105.1ms  121.4ms
      SMTP     A -> C, 40 messages          100.8ms  106.2ms  131.6ms
      fallback A -> C, 15 messages          103.2ms  111.2ms  122.4ms
      ratio HTTPS/SMTP of medians              0.97
      fallback - SMTP median                  2.4ms   10.4ms   21.5ms
      fallback - SMTP sample of its round     0.5ms   19.1ms   24.0ms
    throughput at B, messages/s              HTTPS    SMTP   ratio
      1 connection, 10 s                      52.1    71.6    0.73
      10 connections, 10 s                    79.5    87.1    0.91
    40 concurrent 13.8 MB POSTs (all 200)
      mxdeliv VmHWM / limit                 53.5MB / 64 MB = 0.84
      milter VmHWM (for comparison)         62.6MB

A fallback costs the refused connection and nothing more: no queue retry
(Postfix's first would come minutes later).
"""

import argparse
import http.client
import os
import re
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dns_server  # noqa: E402
from conftest import (  # noqa: E402
    closed_port,
    encrypted_message,
    free_ports,
    grown_encrypted_message,
    start_sandbox,
    stop_sandbox,
)
from conftest import relay_log as log  # noqa: E402

A, B, C = "relay-a.test", "relay-b.test", "relay-c.test"
PASSWORD = "s3cret-password"
MEMORY_LIMIT_MB = 64
# The message size limit of B (the default), for the large messages.
B_PARAMS = "max_message_size = 31457280\n"
COMMON = "max_user_send_per_minute = 6000\nmax_user_send_burst_size = 1000\n"




class Network:
    """A, B and C: A -> B over HTTPS only (B's port 25 seen from A is a
    closed port), A -> C over SMTP after an HTTPS try that is refused at
    once (C's HTTPS seen from A is a closed port)."""

    def __init__(self):
        self.dns_port = dns_server.free_port()
        resolver = f"127.0.0.1:{self.dns_port}"
        bases = []
        while len(bases) < 3:
            b = free_ports(12)
            if all(abs(b - o) >= 12 for o in bases):
                bases.append(b)
        base_a, base_b, base_c = bases
        https = lambda base: f"127.0.0.1:{base + 6}"  # noqa: E731
        self.dead = closed_port()
        self.dead_https = closed_port()
        self.started = []
        self.dns = None
        try:
            self.a = self._start(
                COMMON,
                A,
                resolver,
                [
                    "--port-base", str(base_a),
                    "--peer", f"{B}=127.0.0.1:{self.dead},https={https(base_b)}",
                    "--peer", f"{C}=127.0.0.1:{base_c},https=127.0.0.1:{self.dead_https}",
                ],
            )
            peer_a = ["--peer", f"{A}=127.0.0.1:{base_a},https={https(base_a)}"]
            self.b = self._start(COMMON + B_PARAMS, B, resolver, ["--port-base", str(base_b), *peer_a])
            self.c = self._start(COMMON, C, resolver, ["--port-base", str(base_c), *peer_a])
            records = [
                f"opendkim._domainkey.{r.domain}. 1 IN TXT {dns_server.txt_strings(r.info['dkim_txt'])}"
                for r in (self.a, self.b, self.c)
            ]
            self.dns = dns_server.Unbound(
                {f"{A}.": "static", f"{B}.": "static", f"{C}.": "static"},
                records,
                port=self.dns_port,
            )
        except BaseException:
            self.close()
            raise
        self.key_a = (self.a.state_dir / "dkim/opendkim.private").read_bytes()

    def _start(self, params, domain, resolver, args):
        proc, relay = start_sandbox(params, domain=domain, resolver=resolver, args=args)
        self.started.append((proc, relay))
        return relay

    def close(self):
        try:
            if self.dns is not None:
                self.dns.stop()
        finally:
            for proc, relay in self.started:
                try:
                    stop_sandbox(proc, relay)
                except Exception as e:  # the others are still stopped
                    print(f"stopping {relay.domain}: {e}", file=sys.stderr)




def with_message_id(raw, tag):
    """`raw` under a Message-ID of its own."""
    mid = f"<bench-{tag}-{uuid.uuid4().hex}@bench.test>".encode()
    out, n = re.subn(rb"(?im)^Message-ID:[^\r\n]*", b"Message-ID: " + mid, raw, count=1)
    assert n == 1, "the generated message has a Message-ID"
    return out


def maildir_count(relay, addr):
    """Messages in `addr`'s Maildir (new/ and cur/)."""
    home = relay.mailboxes_dir / addr
    n = 0
    for sub in ("new", "cur"):
        try:
            n += sum(1 for _ in os.scandir(home / sub))
        except FileNotFoundError:
            pass
    return n


def wait_maildir(relay, addr, count, timeout):
    """Seconds until `addr`'s Maildir holds `count` messages (polled every
    2 ms); raises after `timeout`."""
    t0 = time.perf_counter()
    while maildir_count(relay, addr) < count:
        if time.perf_counter() - t0 > timeout:
            raise AssertionError(
                f"{addr}: {maildir_count(relay, addr)} of {count} messages after {timeout} s"
            )
        time.sleep(0.002)
    return time.perf_counter() - t0


def percentile(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, max(0, int(round(q * len(sorted_ms))) - 1))]


def stats(ms):
    ms = sorted(ms)
    return statistics.median(ms), percentile(ms, 0.9), ms[-1]


# --- 1. latency -------------------------------------------------------------


def transport_pids(relay):
    return subprocess.run(
        ["pgrep", "-f", f"chatmail transport --config {relay.info['config']}"],
        capture_output=True, text=True,
    ).stdout.split()


def unix_answers(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def restart_transport(relay, timeout=30):
    """Kills `relay`'s `chatmail transport` (SIGKILL: the sandbox starts it
    again) and waits until the new process answers on its LMTP socket and
    its socketmap; the seconds that took."""
    t0 = time.perf_counter()
    [old] = transport_pids(relay)
    os.kill(int(old), signal.SIGKILL)
    while True:
        assert time.perf_counter() - t0 < timeout, f"{relay.domain}: transport not back in {timeout} s"
        pids = transport_pids(relay)
        if len(pids) == 1 and pids != [old]:
            try:
                cmdline = Path(f"/proc/{pids[0]}/cmdline").read_bytes().decode().split("\0")
            except FileNotFoundError:
                continue
            paths = [relay.info["sockets"]["transport"]] + [
                a.removeprefix("--map-listen=unix:") for a in cmdline if a.startswith("--map-listen=unix:")
            ]
            if len(paths) == 2 and all(unix_answers(p) for p in paths):
                return time.perf_counter() - t0
        time.sleep(0.01)


def is_fallback_round(i, count, fallback_count):
    """Spreads `fallback_count` fallback samples evenly over `count` rounds."""
    return (i + 1) * fallback_count // count > i * fallback_count // count


def latency(net, a_user, routes, fallback, count, fallback_count, warmup=2):
    """{channel: [ms]}: submission at A -> file in the recipient's Maildir,
    channels taking turns message by message. `routes`: [(channel, relay,
    recipient, template)], one message each per round. `fallback`:
    (channel, relay, recipient, template, (warm-up relay, recipient,
    template)): in the rounds chosen by is_fallback_round (and the first
    warm-up round) A's transport is restarted, the untimed warm-up message
    sent, then this channel's message, before the routes'. Also returns
    the restart times in seconds and the rounds of the fallback samples."""
    fb_name, fb_relay, fb_rcpt, fb_template, (w_relay, w_rcpt, w_template) = fallback
    results = {name: [] for name, *_ in routes}
    results[fb_name] = []
    restarts, rounds = [], []
    smtp = net.a.submission()
    smtp.login(a_user, PASSWORD)

    def send(relay, rcpt, template, tag):
        raw = with_message_id(template, tag)
        before = maildir_count(relay, rcpt)
        t0 = time.perf_counter()
        smtp.sendmail(a_user, [rcpt], raw)
        wait_maildir(relay, rcpt, before + 1, timeout=60)
        return (time.perf_counter() - t0) * 1000

    def record(name, i, ms):
        if i >= 0:
            results[name].append(ms)
            print(f"latency {name:8} {i:3d} {ms:8.1f} ms", flush=True)

    try:
        for i in range(-warmup, count):
            if i == -warmup or (i >= 0 and is_fallback_round(i, count, fallback_count)):
                restarts.append(restart_transport(net.a))
                send(w_relay, w_rcpt, w_template, f"warm{i}")
                record(fb_name, i, send(fb_relay, fb_rcpt, fb_template, f"fb{i}"))
                if i >= 0:
                    rounds.append(i)
            for name, relay, rcpt, template in routes:
                record(name, i, send(relay, rcpt, template, f"lat{i}"))
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
    return results, restarts, rounds


# --- 2. throughput ----------------------------------------------------------


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0  # accepted before the deadline
        self.late = 0  # accepted after it (still delivered)
        self.refused = {}
        self.connections = 0
        self.errors = []

    def add(self, ok, in_time, answer=None):
        with self.lock:
            if ok:
                if in_time:
                    self.ok += 1
                else:
                    self.late += 1
            else:
                self.refused[answer] = self.refused.get(answer, 0) + 1


def https_worker(relay, msgs, sender, rcpt, deadline, counter, offset):
    ctx = ssl.create_default_context(cafile=relay.info["tls_cert"])
    ctx.check_hostname = False
    conn = None
    i = offset
    while time.perf_counter() < deadline:
        if conn is None:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", relay.info["https_port"], context=ctx, timeout=60
            )
            with counter.lock:
                counter.connections += 1
        body = msgs[i % len(msgs)]
        i += 1
        headers = {
            "Host": relay.domain,
            "X-Mail-From": sender,
            "X-Mail-To": rcpt,
            "Content-Length": str(len(body)),
        }
        try:
            conn.request("POST", "/mxdeliv", body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace").strip()
        except (http.client.HTTPException, OSError) as e:
            counter.errors.append(repr(e))
            conn.close()
            conn = None
            continue
        counter.add(resp.status == 200, time.perf_counter() <= deadline, f"{resp.status} {text}")
        if resp.will_close:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def smtp_worker(relay, msgs, sender, rcpt, deadline, counter, offset):
    smtp = None
    i = offset
    while time.perf_counter() < deadline:
        if smtp is None:
            smtp = smtplib.SMTP(relay.host, relay.info["smtp_port"], timeout=60)
            smtp.starttls(context=relay.tls)
            with counter.lock:
                counter.connections += 1
        body = msgs[i % len(msgs)]
        i += 1
        try:
            smtp.sendmail(sender, [rcpt], body)
            counter.add(True, time.perf_counter() <= deadline)
        except smtplib.SMTPResponseException as e:
            counter.add(False, True, f"{e.smtp_code} {e.smtp_error.decode(errors='replace')}")
        except (smtplib.SMTPException, OSError) as e:
            counter.errors.append(repr(e))
            smtp.close()
            smtp = None
    if smtp is not None:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def throughput(relay, worker, msgs, sender, rcpt, conns, window):
    """A Counter after `conns` workers ran for `window` seconds."""
    counter = Counter()
    deadline = time.perf_counter() + window
    threads = [
        threading.Thread(
            target=worker,
            args=(relay, msgs, sender, rcpt, deadline, counter, k * len(msgs) // conns),
        )
        for k in range(conns)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counter


# --- 3. memory --------------------------------------------------------------


def proc_status(pid):
    """{field: kB} of /proc/PID/status' Vm* lines."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Vm"):
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])
    return out


def service_pid(relay, name):
    """The pid of `relay`'s `chatmail NAME` (relay.json's, checked against
    the process's command line; else pgrep)."""
    pid = relay.info.get("pids", {}).get(name)
    config = relay.info["config"]
    if pid:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if name.encode() in cmdline and config.encode() in cmdline:
                return pid
        except FileNotFoundError:
            pass
    out = subprocess.run(
        ["pgrep", "-f", f"chatmail {name} --config {config}"], capture_output=True, text=True
    ).stdout.split()
    assert len(out) == 1, f"{name} of {relay.domain}: pgrep found {out}"
    return int(out[0])


def reset_peak(pid):
    """Resets the process's VmHWM to its current RSS (Linux: 5 to
    /proc/PID/clear_refs); False when the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory(net, big, sender, rcpts, count):
    """Peaks in kB of B's mxdeliv and milter under `count` concurrent POSTs
    of `big`, and the answers."""
    pids = {name: service_pid(net.b, name) for name in ("mxdeliv", "milter")}
    before = {name: proc_status(pid) for name, pid in pids.items()}
    reset = {name: reset_peak(pid) for name, pid in pids.items()}
    after_reset = {name: proc_status(pid) for name, pid in pids.items()}
    sampled = {name: 0 for name in pids}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for name, pid in pids.items():
                sampled[name] = max(sampled[name], proc_status(pid).get("VmRSS", 0))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    barrier = threading.Barrier(count)
    answers = []
    lock = threading.Lock()
    ctx = ssl.create_default_context(cafile=net.b.info["tls_cert"])
    ctx.check_hostname = False

    def one(k):
        conn = http.client.HTTPSConnection(
            "127.0.0.1", net.b.info["https_port"], context=ctx, timeout=600
        )
        conn.connect()
        barrier.wait()
        try:
            conn.request(
                "POST",
                "/mxdeliv",
                body=big,
                headers={
                    "Host": net.b.domain,
                    "X-Mail-From": sender,
                    "X-Mail-To": rcpts[k % len(rcpts)],
                    "Content-Length": str(len(big)),
                },
            )
            resp = conn.getresponse()
            answer = f"{resp.status} {resp.read().decode(errors='replace').strip()}"
        except (http.client.HTTPException, OSError) as e:
            answer = repr(e)
        finally:
            conn.close()
        with lock:
            answers.append(answer)

    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(one, range(count)))
    finally:
        took = time.perf_counter() - t0
        stop.set()
        sampler.join()
    after = {name: proc_status(pid) for name, pid in pids.items()}
    return pids, before, reset, after_reset, after, sampled, answers, took


# --- main -------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=40, help="latency: messages per channel")
    p.add_argument("--fallback-count", type=int, default=None,
                   help="latency: fallback samples, spread over the rounds (15; 5 with --quick)")
    p.add_argument("--window", type=float, default=10.0, help="throughput: seconds per measurement")
    p.add_argument("--conns", default="1,10", help="throughput: concurrent connections, comma list")
    p.add_argument("--big-count", type=int, default=None,
                   help="memory: concurrent large POSTs (40; 10 with --quick)")
    p.add_argument("--big-extra", type=int, default=10_000_000,
                   help="memory: bytes added to the encrypted payload (base64 on the wire: 4/3 of it)")
    p.add_argument("--quick", action="store_true",
                   help="10 messages per channel (5 fallbacks), 3 s windows, 10 large POSTs")
    args = p.parse_args()
    if args.quick:
        args.count, args.window = 10, 3.0
    if args.fallback_count is None:
        args.fallback_count = 5 if args.quick else 15
    args.fallback_count = min(args.fallback_count, args.count)
    if args.big_count is None:
        args.big_count = 10 if args.quick else 40
    conns_list = [int(c) for c in args.conns.split(",")]

    t_start = time.perf_counter()
    net = None
    # Addresses made up front: the test-message generator is slow on a busy
    # machine, so its three runs go side by side with the relays' start.
    fresh = lambda domain: f"{uuid.uuid4().hex[:9]}@{domain}"  # noqa: E731
    a_user, b_user, c_user, b_tp = fresh(A), fresh(B), fresh(C), fresh(B)
    c_fb, b_warm = fresh(C), fresh(B)
    b_big = [fresh(B) for _ in range(4)]
    try:
        with ThreadPoolExecutor(3) as pool:
            f_b = pool.submit(encrypted_message, a_user, b_user)
            f_c = pool.submit(encrypted_message, a_user, c_user)
            f_big = pool.submit(grown_encrypted_message, a_user, b_big[0], args.big_extra)
            net = Network()
            tmpl_b, tmpl_c, big_raw = f_b.result(), f_c.result(), f_big.result()
        for relay, addr in [(net.a, a_user), (net.b, b_user), (net.c, c_user), (net.b, b_tp),
                            (net.c, c_fb), (net.b, b_warm)] + [
            (net.b, r) for r in b_big
        ]:
            relay.imap_login(addr, PASSWORD).logout()
        print(f"relays up and messages made in {time.perf_counter() - t_start:.0f} s", flush=True)

        # 1. Latency. The fallback and warm-up messages are those of the
        # other channels to other recipients (To: changed, as for phase 2).
        to = lambda tmpl, old, new: tmpl.replace(f"<{old}>".encode(), f"<{new}>".encode())  # noqa: E731
        routes = [("SMTP", net.c, c_user, tmpl_c), ("HTTPS", net.b, b_user, tmpl_b)]
        fallback = ("fallback", net.c, c_fb, to(tmpl_c, c_user, c_fb), (net.b, b_warm, to(tmpl_b, b_user, b_warm)))
        lat, restarts, fb_rounds = latency(net, a_user, routes, fallback, args.count, args.fallback_count)
        a_log = log(net.a, "transport")
        over_https = len(re.findall(rf"to={re.escape(b_user)}: delivered over HTTPS", a_log))
        c_posts = log(net.c, "nginx-access").count("/mxdeliv")
        why = lambda rcpt: re.findall(  # noqa: E731
            rf"to={re.escape(rcpt)}: not over HTTPS \((.*)\), to Postfix's SMTP client: 250", a_log
        )
        fb_why, smtp_why = why(c_fb), why(c_user)
        fb_refused = sum(1 for w in fb_why if str(net.dead_https) in w and "onnect" in w)
        smtp_only = sum(1 for w in smtp_why if w == "SMTP only for now")
        print(f"checks: {over_https} messages to B delivered over HTTPS (A's transport.log); "
              f"{c_posts} requests to C's /mxdeliv", flush=True)
        print(f"checks: fallback messages with a refused HTTPS try: {fb_refused} of {len(fb_why)} logged "
              f"(expected {len(lat['fallback']) + 1}, one of them warm-up), e.g. {fb_why[:1]}; "
              f"SMTP messages 'SMTP only for now': {smtp_only} of {len(smtp_why)} logged "
              f"(expected {len(lat['SMTP']) + 2}); transport restarts "
              f"{statistics.median(restarts):.2f} s median, {max(restarts):.2f} s max", flush=True)
        assert fb_refused == len(fb_why) == len(lat["fallback"]) + 1, fb_why
        assert smtp_only == len(smtp_why) == len(lat["SMTP"]) + 2, smtp_why

        # 2. Throughput. A pool of messages with Message-IDs of their own,
        # signed by A as A's relay signs.
        tp_tmpl = tmpl_b.replace(f"<{b_user}>".encode(), f"<{b_tp}>".encode())
        msgs = [
            dns_server.sign(with_message_id(tp_tmpl, f"tp{k}"), net.key_a, "opendkim")
            for k in range(200)
        ]
        tp = {}
        delivered = maildir_count(net.b, b_tp)
        for conns in conns_list:
            for name, worker in (("HTTPS", https_worker), ("SMTP", smtp_worker)):
                c = throughput(net.b, worker, msgs, a_user, b_tp, conns, args.window)
                rate = c.ok / args.window
                tp[(name, conns)] = rate
                delivered += c.ok + c.late
                drain = wait_maildir(net.b, b_tp, delivered, timeout=300)
                print(f"throughput {name:5} {conns:2d} conn: {c.ok} accepted in {args.window:g} s "
                      f"= {rate:.1f}/s ({c.connections} connections, {len(c.errors)} errors, "
                      f"refused {c.refused or 0}; all delivered {drain:.1f} s after)", flush=True)
                for e in c.errors[:3]:
                    print(f"  error: {e}", flush=True)

        # 3. Memory.
        big = dns_server.sign(big_raw, net.key_a, "opendkim")
        start_counts = [maildir_count(net.b, r) for r in b_big]
        pids, before, reset, after_reset, after, sampled, answers, took = memory(
            net, big, a_user, b_big, args.big_count
        )
        ok_big = sum(1 for a in answers if a.startswith("200 "))
        print(f"memory: {args.big_count} concurrent POSTs of {len(big) / 1e6:.1f} MB: {ok_big} answered 200 "
              f"in {took:.1f} s; others: {sorted(set(a for a in answers if not a.startswith('200 ')))[:3]}",
              flush=True)
        for name in pids:
            print(f"memory: {name} (pid {pids[name]}): VmHWM before {before[name]['VmHWM'] / 1024:.1f} MB "
                  f"(phases 1-2), reset {'done' if reset[name] else 'refused'} "
                  f"(VmRSS {after_reset[name]['VmRSS'] / 1024:.1f} MB), "
                  f"VmHWM after {after[name]['VmHWM'] / 1024:.1f} MB, sampled VmRSS max "
                  f"{sampled[name] / 1024:.1f} MB", flush=True)
        per = [sum(1 for k in range(args.big_count) if k % len(b_big) == j) for j in range(len(b_big))]
        drain_t0 = time.perf_counter()
        for r, n0, n in zip(b_big, start_counts, per):
            wait_maildir(net.b, r, n0 + n if ok_big == args.big_count else 0, timeout=300)
        print(f"memory: all large messages in the Maildirs {time.perf_counter() - drain_t0:.1f} s after",
              flush=True)

        # Summary.
        print()
        print("=" * 72)
        print(f"Summary (debug build: {os.environ.get('CHATMAIL_BIN', 'target/debug/chatmail')})")
        print("=" * 72)
        print(f"{'latency, submission at A -> recipient Maildir':48} {'median':>7} {'p90':>7} {'max':>7}")
        meds = {}
        for name, desc in (
            ("HTTPS", "HTTPS    A -> B (POST /mxdeliv)"),
            ("SMTP", "SMTP     A -> C (port 25, SMTP only)"),
            ("fallback", "fallback A -> C (HTTPS refused, SMTP)"),
        ):
            med, p90, mx = stats(lat[name])
            meds[name] = med
            print(f"  {desc + f', {len(lat[name])} msgs':46} {med:6.1f}ms {p90:6.1f}ms {mx:6.1f}ms")
        print(f"  {'ratio HTTPS/SMTP of medians':46} {meds['HTTPS'] / meds['SMTP']:7.2f}")
        extra = [ms - meds["SMTP"] for ms in lat["fallback"]]
        e_med, e_p90, e_max = stats(extra)
        print(f"  {'fallback samples - SMTP median':46} {e_med:6.1f}ms {e_p90:6.1f}ms {e_max:6.1f}ms")
        # The same, against the SMTP sample that followed each fallback
        # sample (same round, hence the same load).
        paired = [lat["fallback"][k] - lat["SMTP"][i] for k, i in enumerate(fb_rounds)]
        p_med, p_p90, p_max = stats(paired)
        print(f"  {'fallback - SMTP sample of its round':46} {p_med:6.1f}ms {p_p90:6.1f}ms {p_max:6.1f}ms")
        print(f"  extra delay of the fallback over SMTP: median {e_med:.1f} ms, p90 {e_p90:.1f} ms")
        print(f"{'throughput at B, messages accepted per second':48} {'HTTPS':>7} {'SMTP':>7} {'ratio':>7}")
        for conns in conns_list:
            h, s = tp[("HTTPS", conns)], tp[("SMTP", conns)]
            ratio = f"{h / s:7.2f}" if s else "    n/a"
            print(f"  {f'{conns} connection(s), {args.window:g} s window':46} {h:7.1f} {s:7.1f} {ratio}")
        peak = after["mxdeliv"]["VmHWM"] / 1024
        print(f"memory of B under {args.big_count} concurrent {len(big) / 1e6:.1f} MB POSTs ({ok_big} answered 200)")
        print(f"  {'mxdeliv peak RSS (VmHWM) / limit':46} {peak:6.1f}MB / {MEMORY_LIMIT_MB} MB = "
              f"{peak / MEMORY_LIMIT_MB:.2f}")
        print(f"  {'milter peak RSS (VmHWM), for comparison':46} {after['milter']['VmHWM'] / 1024:6.1f}MB")
        print(f"total run time {time.perf_counter() - t_start:.0f} s")
    finally:
        if net is not None:
            net.close()


if __name__ == "__main__":
    main()
