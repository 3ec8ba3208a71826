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
    deliver(relay, addr, sender=other)
    relay.wait_for_messages(addr, PASSWORD, count=2)
    assert len(push_gateway.wait_for(token)) == 1
    time.sleep(0.5)
    assert len(push_gateway.wait_for(token)) == 1
