"""Relay-to-relay mail over HTTPS (POST /mxdeliv) between sandboxes, with
real Postfix, nginx and unbound (docs/design.md, "HTTPS transport").

Three relays: A reaches B only over HTTPS (A's route to B's port 25 points
at a closed port), B and C reach A over HTTPS, and A's route to C's HTTPS
leads to a listener of the test that offers no /mxdeliv (it closes every
connection, or holds it), so mail from A to C goes over SMTP, through
Postfix's own SMTP client, in the same delivery attempt."""

import http.client
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

import dns_server
from conftest import (
    account,
    closed_port,
    encrypted_message,
    free_ports,
    grown_encrypted_message,
    start_sandbox,
    stop_sandbox,
    wait_log,
)
from conftest import relay_log as log

A, B, C = "relay-a.test", "relay-b.test", "relay-c.test"
PASSWORD = "s3cret-password"




class NoMxdeliv:
    """A TCP listener standing for a relay without /mxdeliv: it counts the
    connections and closes each at once, or, while `hold` is set, keeps it
    open without a word (a delivery that is under way)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.hold = False
        self.held = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.hold:
                self.held.append(conn)
            else:
                conn.close()

    def release(self):
        self.hold = False
        for c in self.held:
            c.close()
        self.held.clear()

    def close(self):
        self.release()
        self.sock.close()


class Network:
    def __init__(self):
        self.dns_port = dns_server.free_port()
        resolver = f"127.0.0.1:{self.dns_port}"
        bases = []
        while len(bases) < 3:
            b = free_ports(12)
            if all(abs(b - o) >= 12 for o in bases):
                bases.append(b)
        base_a, base_b, base_c = bases
        # A sandbox's HTTPS port is its port base + 6, HTTP + 5.
        https = lambda base: f"127.0.0.1:{base + 6}"  # noqa: E731
        common = (
            "max_user_send_per_minute = 6000\nmax_user_send_burst_size = 1000\n"
            "max_message_size = 2000000\n"
        )
        self.dead = closed_port()
        self.c_https = NoMxdeliv()
        self.proc_a, self.a = start_sandbox(
            common,
            domain=A,
            resolver=resolver,
            args=[
                "--port-base", str(base_a),
                "--peer", f"{B}=127.0.0.1:{self.dead},https={https(base_b)}",
                "--peer", f"{C}=127.0.0.1:{base_c},https=127.0.0.1:{self.c_https.port}",
            ],
        )
        self.proc_b, self.b = start_sandbox(
            common,
            domain=B,
            resolver=resolver,
            args=["--port-base", str(base_b), "--peer", f"{A}=127.0.0.1:{base_a},https={https(base_a)}"],
        )
        self.proc_c, self.c = start_sandbox(
            common,
            domain=C,
            resolver=resolver,
            args=["--port-base", str(base_c), "--peer", f"{A}=127.0.0.1:{base_a},https={https(base_a)}"],
        )
        records = [
            f"opendkim._domainkey.{r.domain}. 1 IN TXT {dns_server.txt_strings(r.info['dkim_txt'])}"
            for r in (self.a, self.b, self.c)
        ]
        self.dns = dns_server.Unbound(
            {f"{A}.": "static", f"{B}.": "static", f"{C}.": "static"},
            records,
            port=self.dns_port,
        )
        self.key_a = (self.a.state_dir / "dkim/opendkim.private").read_bytes()

    def close(self):
        self.c_https.close()
        self.dns.stop()
        for proc, relay in ((self.proc_a, self.a), (self.proc_b, self.b), (self.proc_c, self.c)):
            stop_sandbox(proc, relay)


@pytest.fixture(scope="module")
def net():
    n = Network()
    yield n
    n.close()








def submit(relay, sender, rcpt, raw):
    with relay.submission() as smtp:
        smtp.login(sender, PASSWORD)
        smtp.sendmail(sender, [rcpt], raw)


def post(relay, raw, sender, rcpts, method="POST", headers=None, chunked=False):
    """A request to `relay`'s /mxdeliv as another relay sends it (with
    `chunked`, the body in chunks of unannounced length); returns (status,
    body text)."""
    ctx = ssl.create_default_context(cafile=relay.info["tls_cert"])
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", relay.info["https_port"], context=ctx, timeout=60)
    h = {"Host": relay.domain}
    if sender:
        h["X-Mail-From"] = sender
    conn.putrequest(method, "/mxdeliv", skip_host=True)
    for k, v in h.items():
        conn.putheader(k, v)
    for r in rcpts:
        conn.putheader("X-Mail-To", r)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    if chunked:
        conn.putheader("Transfer-Encoding", "chunked")
    elif raw is not None and "Content-Length" not in (headers or {}):
        conn.putheader("Content-Length", str(len(raw)))
    conn.endheaders()
    try:
        if chunked:
            for i in range(0, len(raw), 65536):
                piece = raw[i : i + 65536]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
        elif raw is not None:
            conn.send(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused before the end: the answer is waiting
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, body.strip()


def test_a_reaches_b_over_https_only_and_b_answers_a(net):
    a_user, b_user = account(net.a), account(net.b)
    submit(net.a, a_user, b_user, encrypted_message(a_user, b_user))
    [raw] = net.b.wait_for_messages(b_user, PASSWORD, timeout=60)
    assert f"From: <{a_user}>".encode() in raw or a_user.encode() in raw
    wait_log(net.a, "transport", rf"to={b_user}: delivered over HTTPS to 127\.0\.0\.1:")
    assert re.search(r'"POST /mxdeliv HTTP/1\.1" 200 ', log(net.b, "nginx-access"))
    # Port 25's checks applied at B, to the client's address (XCLIENT: a
    # connection over the unix socket alone would say localhost).
    assert re.search(rf"DKIM pass: d={A} aligned with From", log(net.b, "milter"))
    assert re.search(r"postfix/mxdeliv/smtpd\[\d+\]: \w+: client=unknown\[127\.0\.0\.1\]", log(net.b, "postfix"))
    # And back from B to A over HTTPS.
    submit(net.b, b_user, a_user, encrypted_message(b_user, a_user))
    [back] = net.a.wait_for_messages(a_user, PASSWORD, timeout=60)
    assert b_user.encode() in back
    wait_log(net.b, "transport", rf"to={a_user}: delivered over HTTPS")
    # A's Postfix never connected to B's port 25 (it cannot).
    assert f"127.0.0.1[127.0.0.1]:{net.dead}" not in log(net.a, "postfix")


def test_without_https_mail_goes_over_smtp_at_once_and_is_remembered(net):
    a_user, c_user = account(net.a), account(net.c)
    before = net.c_https.connections
    t0 = time.time()
    submit(net.a, a_user, c_user, encrypted_message(a_user, c_user))
    [raw] = net.c.wait_for_messages(c_user, PASSWORD, timeout=60)
    took = time.time() - t0
    # In the same attempt: no queue retry (Postfix's first is minutes away).
    assert took < 30, took
    wait_log(net.a, "transport", rf"to={c_user}: not over HTTPS \(.*\), to Postfix's SMTP client: 250")
    wait_log(net.a, "postfix", rf"postfix/chatmail-smtp/smtp\[\d+\]: \w+: to=<{c_user}>.*status=sent")
    # One HTTPS try.
    assert net.c_https.connections == before + 1
    wait_log(net.a, "transport", rf"{C}: SMTP only for the next 30 minutes")

    # Remembered: the next message goes over SMTP without an HTTPS try.
    c2 = account(net.c)
    submit(net.a, a_user, c2, encrypted_message(a_user, c2))
    net.c.wait_for_messages(c2, PASSWORD, timeout=60)
    wait_log(net.a, "transport", rf"to={c2}: not over HTTPS \(SMTP only for now\)")
    assert net.c_https.connections == before + 1

    # A failed SMTP connection ends that: HTTPS is tried again, and the
    # message waits in A's queue (neither channel works).
    etc_c = net.c.info["postfix_config_dir"]
    subprocess.run(net.c.tool("postfix", "-c", etc_c, "stop"), check=True, capture_output=True)
    try:
        c3 = account(net.c)
        submit(net.a, a_user, c3, encrypted_message(a_user, c3))
        wait_log(net.a, "transport", rf"{C}: SMTP connection failed, HTTPS first again")
        wait_log(net.a, "transport", rf"to={c3}: deferred, not over HTTPS")
    finally:
        subprocess.run(net.c.tool("postfix", "-c", etc_c, "start"), check=True, capture_output=True)
    # Back: the retry tries HTTPS first, then SMTP, and delivers.
    before = net.c_https.connections
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", net.c.info["smtp_port"]), 1).close()
            break
        except OSError:
            time.sleep(0.2)
    subprocess.run(net.a.tool("postqueue", "-c", net.a.info["postfix_config_dir"], "-f"), check=True)
    net.c.wait_for_messages(c3, PASSWORD, timeout=60)
    assert net.c_https.connections == before + 1


def test_posts_meet_the_checks_of_port_25(net):
    a_user, b_user = account(net.a), account(net.b)
    msg = encrypted_message(a_user, b_user)
    # Unsigned: refused exactly as on port 25.
    with net.b.port25(sign=False) as smtp:
        try:
            smtp.sendmail(a_user, [b_user], msg)
            port25 = (250, "")
        except smtplib.SMTPDataError as e:
            port25 = (e.smtp_code, e.smtp_error.decode())
    assert port25[0] == 550, port25
    status, body = post(net.b, msg, a_user, [b_user])
    assert (status, body) == (400, f"{port25[0]} {port25[1]}")
    # Forged: signed, then changed.
    signed = dns_server.sign(msg, net.key_a, "opendkim")
    forged = signed.replace(b"-----END PGP MESSAGE-----", b"-----END PGP MESSAGE-----\r\n")
    status, body = post(net.b, forged, a_user, [b_user])
    assert status == 400 and "5.7.20 DKIM signature of the From domain does not verify" in body, body
    # Cleartext to a recipient who only takes encrypted mail.
    plain = (
        f"From: <{a_user}>\r\nTo: <{b_user}>\r\nSubject: hi\r\n"
        "Message-ID: <plain-1@relay-a.test>\r\nDate: Sat, 05 Dec 2026 06:00:00 +0000\r\n"
        "\r\nhello\r\n"
    ).encode()
    status, body = post(net.b, dns_server.sign(plain, net.key_a, "opendkim"), a_user, [b_user])
    assert status == 400 and body.startswith("523 "), body
    # An unknown recipient at RCPT.
    status, body = post(net.b, signed, a_user, [f"nobody1@{B}"])
    assert status == 400 and body.startswith("550 5.1.1 "), body
    # The control: the same message, signed, is delivered.
    assert post(net.b, signed, a_user, [b_user])[0] == 200
    assert len(net.b.wait_for_messages(b_user, PASSWORD, timeout=30)) == 1


def test_malformed_and_oversized_requests(net):
    a_user, b_user = account(net.a), account(net.b)
    signed = dns_server.sign(encrypted_message(a_user, b_user), net.key_a, "opendkim")
    assert post(net.b, None, a_user, [b_user], method="GET")[0] == 405
    assert post(net.b, signed, a_user, []) == (400, "501 5.5.4 no X-MAIL-TO recipient")
    # max_message_size is 2000000 here: announced, or found out on the way.
    status, body = post(net.b, b"x", a_user, [b_user], headers={"Content-Length": "3000000"})
    assert (status, body) == (413, "552 5.3.4 Message exceeds maximum size")
    big = dns_server.sign(grown_encrypted_message(a_user, b_user, 2_500_000), net.key_a, "opendkim")
    assert post(net.b, big, a_user, [b_user], chunked=True) == (
        413,
        "552 5.3.4 Message exceeds maximum size",
    )
    # The service is still there.
    assert post(net.b, signed, a_user, [b_user])[0] == 200
    assert len(net.b.wait_for_messages(b_user, PASSWORD, timeout=30)) == 1


def queue(relay):
    out = subprocess.run(
        relay.tool("postqueue", "-c", relay.info["postfix_config_dir"], "-j"),
        capture_output=True, text=True, check=True,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_killing_the_transport_mid_delivery_loses_and_duplicates_nothing(net):
    """A's transport is killed (SIGKILL) while its HTTPS request to C
    hangs: Postfix keeps the message, the restarted transport delivers it
    on the retry, once."""
    a_user, c_user = account(net.a), account(net.c)
    net.c_https.hold = True
    try:
        # C is "SMTP only" after the test before: a failed SMTP connection
        # would end that, so the HTTPS try is certain only with a fresh
        # transport, which forgets. Kill it once first.
        pids = lambda: subprocess.run(  # noqa: E731
            ["pgrep", "-f", f"chatmail transport --config {net.a.info['config']}"],
            capture_output=True, text=True,
        ).stdout.split()
        [first] = pids()
        os.kill(int(first), signal.SIGKILL)
        wait_until(lambda: pids() and pids() != [first])
        held = net.c_https.connections
        submit(net.a, a_user, c_user, encrypted_message(a_user, c_user))
        wait_until(lambda: net.c_https.connections > held)
        [pid] = pids()
        os.kill(int(pid), signal.SIGKILL)
        wait_until(lambda: pids() and pids() != [pid])
    finally:
        net.c_https.release()
    # The message is still in A's queue, deferred by Postfix.
    wait_until(lambda: any(c_user in line for line in queue(net.a)))
    wait_log(net.a, "postfix", r"chatmail-https/lmtp\[\d+\]: \w+: to=<" + re.escape(c_user) + r">.*status=deferred")
    subprocess.run(net.a.tool("postqueue", "-c", net.a.info["postfix_config_dir"], "-f"), check=True)
    net.c.wait_for_messages(c_user, PASSWORD, timeout=60)
    wait_until(lambda: not any(c_user in line for line in queue(net.a)))
    time.sleep(2)
    assert len(net.c.wait_for_messages(c_user, PASSWORD, timeout=5)) == 1


def wait_until(cond, timeout=30):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_delta_chat_across_relays_over_https(net, tmp_path):
    """Delta Chat clients on A and on B: Secure-Join and a conversation,
    every message between the relays over HTTPS (A cannot reach B's port
    25 at all)."""
    from test_deltachat import Clients, secure_join, wait_event

    on_a, on_b = Clients(net.a, tmp_path / "a"), Clients(net.b, tmp_path / "b")
    try:
        alice, bob = on_a.account(), on_b.account()
        chat, _ = secure_join(alice, bob, timeout=90)

        def received(ac, text):
            def is_it(ev):
                return ac.get_message_by_id(ev["msgId"]).get_snapshot().text == text

            ev = wait_event(ac, "IncomingMsg", 60, is_it)
            return ac.get_message_by_id(ev["msgId"]).get_snapshot()

        chat.send_text("hello from B over HTTPS")
        snap = received(alice, "hello from B over HTTPS")
        assert snap.show_padlock
        snap.chat.send_text("and back from A")
        assert received(bob, "and back from A").show_padlock
        a_addr = on_a.creds[alice.id]["email"]
        b_addr = on_b.creds[bob.id]["email"]
        wait_log(net.a, "transport", rf"to={re.escape(b_addr)}: delivered over HTTPS")
        wait_log(net.b, "transport", rf"to={re.escape(a_addr)}: delivered over HTTPS")
        assert f"127.0.0.1[127.0.0.1]:{net.dead}" not in log(net.a, "postfix")
    finally:
        on_a.close()
        on_b.close()
