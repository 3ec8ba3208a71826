"""Notify tokens over IMAP METADATA through real Dovecot, and push
notifications on delivery through Dovecot's Lua push driver to a local
HTTP/2 gateway."""

import email
import imaplib
import json
import time

import pytest
from conftest import encrypted_message

PASSWORD = "s3cret-password"
VENDOR = "/shared/vendor/deltachat"
# imaplib knows no METADATA commands (RFC 5464); teach it their states.
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))


def metadata(conn, *args):
    """Runs a METADATA command; returns its status and the untagged METADATA
    response as one bytes string (literals inlined)."""
    typ, data = conn._simple_command(*args)
    assert typ in ("OK", "NO", "BAD"), typ
    parts = conn._untagged_response(typ, data, "METADATA")[1]
    flat = b"".join(
        b" ".join(p) if isinstance(p, tuple) else p for p in parts if p is not None
    )
    return typ, flat


def set_token(conn, token):
    return metadata(conn, "SETMETADATA", "INBOX", f'(/private/devicetoken "{token}")')[0]


def tokens_on_disk(relay, addr):
    path = relay.mailboxes_dir / addr / "metadata.json"
    if not path.exists():
        return set()
    return set(json.loads(path.read_text()).get("devicetoken", {}))


def deliver(relay, addr, sender="someone@example.net"):
    with relay.port25() as smtp:
        smtp.sendmail(sender, [addr], encrypted_message(sender, addr))


def test_token_round_trip_and_limits(relay):
    addr = relay.fresh_addr()
    conn = relay.imap_login(addr, PASSWORD)
    typ, caps = conn.capability()
    assert b"METADATA" in caps[0].split(), caps
    assert set_token(conn, "tok-one") == "OK"
    assert set_token(conn, "tok-two") == "OK"
    typ, data = metadata(conn, "GETMETADATA", "INBOX", "/private/devicetoken")
    assert typ == "OK"
    assert b"tok-one tok-two" in data or b"tok-two tok-one" in data, data
    assert tokens_on_disk(relay, addr) == {"tok-one", "tok-two"}

    # Keys we do not understand are not stored; huge tokens are refused.
    assert metadata(conn, "SETMETADATA", "INBOX", '(/private/other "x")')[0] == "NO"
    assert set_token(conn, "x" * 5000) == "NO"
    assert tokens_on_disk(relay, addr) == {"tok-one", "tok-two"}
    # The lookup separates tokens by spaces: one with a space would read as two.
    assert set_token(conn, "tok three") == "NO"
    assert set_token(conn, "tok\tfour") == "NO"
    assert tokens_on_disk(relay, addr) == {"tok-one", "tok-two"}
    assert set_token(conn, "openpgp:wcBMA0Fq+/8xZ2K3AQ==") == "OK"
    conn.logout()


def test_relay_information(relay):
    conn = relay.imap_login(relay.fresh_addr(), PASSWORD)
    typ, data = metadata(conn, "GETMETADATA", '""', f"{VENDOR}/maxsmtprecipients")
    assert typ == "OK" and data.endswith(b" 1000)") or b'"1000"' in data, data
    typ, data = metadata(conn, "GETMETADATA", '""', f"{VENDOR}/irohrelay")
    assert typ == "OK" and f"https://{relay.domain}".encode() in data, data
    conn.logout()


def test_new_mail_pushes_every_token_once(relay, push_gateway):
    addr = relay.fresh_addr()
    conn = relay.imap_login(addr, PASSWORD)
    token_a, token_b = f"tok-a-{addr}", f"tok-b-{addr}"
    assert set_token(conn, token_a) == "OK"
    assert set_token(conn, token_b) == "OK"
    conn.logout()

    deliver(relay, addr)
    for token in (token_a, token_b):
        [req] = push_gateway.wait_for(token)
        assert req["version"] == "HTTP/2.0"
        assert req["status"] == 200


def test_gone_tokens_are_forgotten(relay, push_gateway):
    addr = relay.fresh_addr()
    conn = relay.imap_login(addr, PASSWORD)
    gone, kept = f"gone-{addr}", f"kept-{addr}"
    assert set_token(conn, gone) == "OK"
    assert set_token(conn, kept) == "OK"
    conn.logout()

    deliver(relay, addr)
    push_gateway.wait_for(gone)
    push_gateway.wait_for(kept)
    deadline = time.time() + 10
    while gone in tokens_on_disk(relay, addr) and time.time() < deadline:
        time.sleep(0.05)
    assert tokens_on_disk(relay, addr) == {kept}


def test_mail_to_self_does_not_push(relay, push_gateway):
    addr, other = relay.fresh_addr(), relay.fresh_addr()
    conn = relay.imap_login(addr, PASSWORD)
    token = f"self-{addr}"
    assert set_token(conn, token) == "OK"
    conn.logout()
    relay.imap_login(other, PASSWORD).logout()

    with relay.submission() as smtp:
        smtp.login(addr, PASSWORD)
        smtp.sendmail(addr, [addr], encrypted_message(addr, addr))
    relay.wait_for_messages(addr, PASSWORD, count=1)
    # A later message from someone else is pushed; the self-sent one was not.
    # (From another server: port 25 mail claiming a local user needs the
    # relay's own DKIM signature.)
    deliver(relay, addr)
    relay.wait_for_messages(addr, PASSWORD, count=2)
    assert len(push_gateway.wait_for(token)) == 1
    time.sleep(0.5)
    assert len(push_gateway.wait_for(token)) == 1


class DictClient:
    """Speaks the Dovecot dict protocol to a chatmail socket, as Dovecot does."""

    def __init__(self, path):
        import socket

        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb")
        self.send("H3\t2\t0\t\tmetadata\n")
        self.tx = 0

    def send(self, text):
        self.file.write(text.encode())
        self.file.flush()

    def commit_set(self, user, key, value):
        self.tx += 1
        self.send(f"B{self.tx}\t{user}\nS{self.tx}\t{key}\t{value}\nC{self.tx}\n")
        return self.file.readline().decode()

    def close(self):
        self.sock.close()


def test_a_burst_for_a_stalled_gateway_posts_at_most_twice(relay, push_gateway):
    addr = relay.fresh_addr()
    relay.imap_login(addr, PASSWORD).logout()
    token = f"slow-{addr}"  # the gateway answers these after 3 s
    client = DictClient(relay.info["sockets"]["metadata"])
    assert client.commit_set(addr, "priv/0123/devicetoken", token) == f"O{client.tx}\n"
    for _ in range(100):
        assert client.commit_set(addr, "priv/0123/messagenew", "") == f"O{client.tx}\n"
    client.close()
    push_gateway.wait_for(token, count=1)
    time.sleep(7)  # both possible POSTs (in flight + one coalesced) are done
    assert 1 <= len(push_gateway.wait_for(token)) <= 2


def test_queued_notifications_survive_kill_9(tmp_path, push_gateway):
    import os
    import signal
    import subprocess

    from conftest import CHATMAIL_BIN

    mail = tmp_path / "mail" / "chat.localhost"
    users = [f"killtest{i}@chat.localhost" for i in range(3)]
    for user in users:
        (mail / user).mkdir(parents=True)
        (mail / user / "password").write_text("{SHA512-CRYPT}$6$x$y")
    ini = tmp_path / "chatmail.ini"
    sock = tmp_path / "metadata.socket"

    def start(push_url):
        ini.write_text(
            f"[params]\nmail_domain = chat.localhost\nmailboxes_dir = {mail}\n"
            f"push_notification_url = {push_url}\npush_notification_h2c = true\n"
        )
        proc = subprocess.Popen(
            [str(CHATMAIL_BIN), "metadata", "--config", str(ini), "--listen", f"unix:{sock}"],
            stderr=open(tmp_path / "metadata.log", "a"),
        )
        deadline = time.time() + 20
        while True:
            try:
                return proc, DictClient(sock)
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "metadata did not start"
                time.sleep(0.05)

    # Nothing listens on port 1: every first attempt fails and is rescheduled.
    proc, client = start("http://127.0.0.1:1/notify")
    tokens = [f"durable-{os.urandom(6).hex()}" for _ in users]
    for user, token in zip(users, tokens):
        assert client.commit_set(user, "priv/g/devicetoken", token).startswith("O")
        assert client.commit_set(user, "priv/g/messagenew", "").startswith("O")
    client.close()
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    proc, client = start(push_gateway.url)
    try:
        for token in tokens:
            push_gateway.wait_for(token, timeout=30)
        time.sleep(1)
        for token in tokens:
            assert len(push_gateway.wait_for(token)) == 1
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
