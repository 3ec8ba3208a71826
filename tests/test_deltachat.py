"""End to end with real Delta Chat clients: the `deltachat-rpc-server` from
PyPI (Delta Chat core), driven over JSON-RPC, configures accounts from
`chatmail newemail` credentials on a sandbox relay and chats through it.

Every wait is bounded: events are read with timeouts, and a watchdog kills a
test's rpc server if the test runs too long, which fails every pending call.
"""

import base64
import imaplib
import json
import os
import queue
import smtplib
import subprocess
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import CHATMAIL_BIN
from deltachat_rpc_client import DeltaChat, Rpc
from deltachat_rpc_client.const import MessageState

VENV_BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"
ENCRYPTION_NEEDED = (523, b"5.7.1 Encryption Needed: Invalid Unencrypted Mail")
# A test whose rpc server is still running after this long is stuck.
TEST_DEADLINE = 120
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))


def new_credentials(relay):
    """Fresh credentials from `chatmail newemail`, as the CGI prints them."""
    out = subprocess.run(
        [str(CHATMAIL_BIN), "newemail", "--config", relay.info["config"], "--self-signed"],
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    head, body = out.split(b"\r\n\r\n", 1)
    assert head == b"Content-Type: application/json"
    creds = json.loads(body)
    assert creds["email"].endswith("@" + relay.domain)
    assert creds["dclogin_url"].startswith("dclogin:")
    return creds


class Clients:
    """One rpc server (own accounts dir) and the accounts made on it."""

    def __init__(self, relay, accounts_dir, deadline=TEST_DEADLINE):
        self.relay = relay
        env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
        self.rpc = Rpc(accounts_dir=str(accounts_dir), env=env)
        self.rpc.start()
        self.dc = DeltaChat(self.rpc)
        self.watchdog = threading.Timer(deadline, self.rpc.process.kill)
        self.watchdog.daemon = True
        self.watchdog.start()
        self.creds = {}

    def account(self, start=True):
        creds = new_credentials(self.relay)
        ac = self.dc.add_account()
        ac.set_config("mdns_enabled", "1")
        ac.add_or_update_transport(
            {
                "addr": creds["email"],
                "password": creds["password"],
                "imapServer": self.relay.host,
                "imapPort": self.relay.info["imaps_port"],
                "imapSecurity": "ssl",
                "smtpServer": self.relay.host,
                "smtpPort": self.relay.info["submissions_port"],
                "smtpSecurity": "ssl",
                "certificateChecks": "acceptInvalidCertificates",
            }
        )
        assert ac.is_configured()
        self.creds[ac.id] = creds
        if start:
            ac.bring_online()
        return ac

    def close(self):
        self.watchdog.cancel()
        killer = threading.Timer(30, self.rpc.process.kill)
        killer.start()
        try:
            self.rpc.close()
        finally:
            killer.cancel()
            self.rpc.process.wait(timeout=30)


@pytest.fixture
def clients(relay):
    with tempfile.TemporaryDirectory(prefix="dc-accounts-") as tmp:
        c = Clients(relay, Path(tmp) / "accounts")
        try:
            yield c
        finally:
            c.close()


def wait_event(ac, kind, timeout=30, where=lambda ev: True):
    """The next event of `kind` (matching `where`) on `ac`; others are dropped."""
    q = ac._rpc.get_queue(ac.id)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            ev = q.get(timeout=max(remaining, 0.001))
        except queue.Empty:
            raise AssertionError(f"account {ac.id}: no {kind} event within {timeout} s")
        if ev["kind"] == kind and where(ev):
            return ev
        if ev["kind"] == "Error":
            print(f"account {ac.id} error event: {ev['msg']}")


def wait_until(cond, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.1)


def secure_join(inviter, joiner, qr=None, timeout=30):
    """Runs Secure-Join from `inviter`'s QR code (setup-contact unless `qr`)
    and returns the joiner's chat with the inviter (or the group)."""
    qr = qr or inviter.get_qr_code()
    chat = joiner.secure_join(qr)
    wait_event(joiner, "SecurejoinJoinerProgress", timeout, lambda ev: ev["progress"] == 1000)
    ev = wait_event(inviter, "SecurejoinInviterProgress", timeout, lambda ev: ev["progress"] == 1000)
    return chat, ev["contactId"]


def wait_downloaded(msg, timeout=60):
    """The message's snapshot once its attachment is fully downloaded."""
    deadline = time.monotonic() + timeout
    while True:
        snap = msg.get_snapshot()
        if snap.download_state == "Done" and snap.file:
            return snap
        assert time.monotonic() < deadline, f"not downloaded in {timeout} s: {snap}"
        time.sleep(0.1)


def incoming(ac, timeout=30):
    """The next incoming message that is not an info message (such as
    "member added"), as a Message."""
    deadline = time.monotonic() + timeout
    while True:
        ev = wait_event(ac, "IncomingMsg", max(deadline - time.monotonic(), 0.001))
        msg = ac.get_message_by_id(ev["msgId"])
        if not msg.get_snapshot().is_info:
            return msg


def inbox_count(relay, creds):
    conn = relay.imap_login(creds["email"], creds["password"])
    try:
        typ, data = conn.select("INBOX")
        return int(data[0])
    finally:
        conn.logout()


def test_accounts_on_a_chatmail_relay(clients, relay):
    a = clients.account()
    b = clients.account()
    for ac in (a, b):
        [transport] = ac.list_transports()
        assert transport["imapServer"] == relay.host
        assert transport["imapPort"] == relay.info["imaps_port"]
        assert transport["smtpPort"] == relay.info["submissions_port"]
        assert transport["addr"] == clients.creds[ac.id]["email"]
        # The account really exists on the relay now (created at first login).
        assert (relay.mailboxes_dir / transport["addr"] / "password").exists()
        info = ac.get_info()
        assert "cert_accept_invalid_certificates" in info["used_transport_settings"]

    # Core 2.65 no longer exposes an `is_chatmail` config key (get_config
    # refuses it) nor anything in get_info; what it does with the XCHATMAIL
    # capability is observable: with one device (no bcc_self) it deletes each
    # message from a chatmail relay as soon as it is downloaded, which it
    # never does on a plain IMAP server.
    assert b.get_config("bcc_self") == "0"
    chat, _ = secure_join(a, b)
    chat.send_text("hello")
    msg = incoming(a)
    assert msg.get_snapshot().text == "hello"
    wait_until(lambda: inbox_count(relay, clients.creds[a.id]) == 0,
               what="message deleted from the relay after download")


def test_securejoin_encrypted_chat_and_read_receipts(clients):
    a = clients.account()
    b = clients.account()
    b_chat, b_contact_at_a = secure_join(a, b)

    # The joiner's chat is with a key-contact; so is the inviter's.
    [contact_a] = b_chat.get_contacts()
    assert contact_a.get_snapshot().is_key_contact
    assert contact_a.get_snapshot().address == clients.creds[a.id]["email"]
    a_chat = a.get_contact_by_id(b_contact_at_a).create_chat()
    assert a.get_contact_by_id(b_contact_at_a).get_snapshot().is_key_contact

    sent = b_chat.send_text("hello from B")
    msg = incoming(a).get_snapshot()
    assert (msg.text, msg.show_padlock, msg.chat_id) == ("hello from B", True, a_chat.id)

    sent_a = a_chat.send_text("hello from A")
    msg_b = incoming(b)
    snap = msg_b.get_snapshot()
    assert (snap.text, snap.show_padlock, snap.chat_id) == ("hello from A", True, b_chat.id)
    assert sent_a.get_snapshot().show_padlock

    # Read receipts both ways.
    msg_b.mark_seen()
    wait_event(a, "MsgRead", 30, lambda ev: ev["msgId"] == sent_a.id)
    assert sent_a.get_snapshot().state == MessageState.OUT_MDN_RCVD
    a.mark_seen_messages([a.get_message_by_id(m.id) for m in a_chat.get_messages()
                          if m.get_snapshot().from_id == b_contact_at_a])
    wait_event(b, "MsgRead", 30, lambda ev: ev["msgId"] == sent.id)
    assert sent.get_snapshot().state == MessageState.OUT_MDN_RCVD


def test_group_of_three_with_attachment(clients, tmp_path):
    a = clients.account()
    b = clients.account()
    c = clients.account()
    group = a.create_group("three")
    qr = group.get_qr_code()
    secure_join(a, b, qr)
    secure_join(a, c, qr)
    assert len(group.get_contacts()) == 3

    payload = os.urandom(1024 * 1024)
    path = tmp_path / "megabyte.bin"
    path.write_bytes(payload)
    sent = group.send_message(text="a megabyte", file=str(path))
    for ac in (b, c):
        msg = incoming(ac, timeout=60)
        # Large messages arrive as a small pre-message; the attachment follows.
        snap = wait_downloaded(msg)
        assert snap.text == "a megabyte"
        assert snap.show_padlock
        assert Path(snap.file).read_bytes() == payload
        chat = ac.get_chat_by_id(snap.chat_id).get_full_snapshot()
        assert chat.name == "three" and len(chat.contact_ids) == 3
    assert sent.get_snapshot().show_padlock

    # A member's reply reaches both others.
    b_group = b.get_chat_by_id(msg.get_snapshot().chat_id)
    b_group.send_text("got it")
    for ac in (a, c):
        snap = incoming(ac).get_snapshot()
        assert (snap.text, snap.show_padlock) == ("got it", True)


def fake_encrypted_token():
    """Shaped like the tokens Delta Chat core registers: `openpgp:` and the
    base64 of the token (padded to 512 bytes) encrypted to the notifiers' key."""
    return "openpgp:" + base64.b64encode(os.urandom(650)).decode()


def test_push_notification_for_delta_chat_message(clients, relay, push_gateway):
    a = clients.account()
    b = clients.account()
    chat, _ = secure_join(a, b)
    creds = clients.creds[a.id]

    # deltachat-rpc-server has no call to give the core a device token (that
    # is `dc_accounts_set_push_device_token` in the C API of mobile apps), so
    # the token is registered the way core does it, with A's credentials.
    token = fake_encrypted_token()
    conn = relay.imap_login(creds["email"], creds["password"])
    try:
        typ, caps = conn.capability()
        assert {b"METADATA", b"XDELTAPUSH", b"XCHATMAIL"} <= set(caps[0].split())
        typ, data = conn._simple_command(
            "SETMETADATA", '"INBOX"', f'(/private/devicetoken "{token}")'
        )
        assert typ == "OK", data
    finally:
        conn.logout()
    stored = json.loads((relay.mailboxes_dir / creds["email"] / "metadata.json").read_text())
    assert token in stored["devicetoken"]

    chat.send_text("wake up")
    [req] = push_gateway.wait_for(token, timeout=30)
    assert req["status"] == 200
    assert incoming(a).get_snapshot().text == "wake up"


def test_cleartext_from_a_delta_chat_account_is_refused(clients, relay):
    a = clients.account(start=False)
    b = clients.account(start=False)
    sender, password = clients.creds[a.id]["email"], clients.creds[a.id]["password"]
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = clients.creds[b.id]["email"]
    msg["Subject"] = "hi"
    msg.set_content("this is not encrypted")
    with relay.submissions() as smtp:
        smtp.login(sender, password)
        with pytest.raises(smtplib.SMTPDataError) as e:
            smtp.send_message(msg)
    assert (e.value.smtp_code, e.value.smtp_error) == ENCRYPTION_NEEDED
