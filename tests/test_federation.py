"""Two relays on loopback that deliver to each other over port 25 (Postfix
transport maps with STARTTLS), DKIM on, with a real DNS server (unbound)
publishing both relays' keys: signing at the sender, strictly aligned
verification at the receiver, clean stored headers, bounces, the refusal
cases, and a DNS outage that defers instead of refusing."""

import re
import subprocess
import tempfile
from pathlib import Path

import pytest

import dns_server
from conftest import (
    account,
    CHATMAIL_BIN,
    encrypted_message,
    free_ports,
    grown_encrypted_message,
    start_sandbox,
    stop_sandbox,
    wait_log,
)
from conftest import relay_log as log

A, B, SIBLING = "relay-a.test", "relay-b.test", "relay-c.test"
PASSWORD = "s3cret-password"
NO_SIGNATURE = (550, b"5.7.20 No DKIM signature found")
BROKEN = (550, b"5.7.20 DKIM signature of the From domain does not verify")
MISALIGNED = (550, b"5.7.22 No DKIM signature by the From domain")


class Network:
    def __init__(self):
        self.dns_port = dns_server.free_port()
        resolver = f"127.0.0.1:{self.dns_port}"
        base_a, base_b = free_ports(12), free_ports(12)
        while abs(base_a - base_b) < 12:
            base_b = free_ports(12)
        common = "max_user_send_per_minute = 6000\nmax_user_send_burst_size = 1000\n"
        # A's mailboxes are small, so a big message to A bounces.
        self.proc_a, self.a = start_sandbox(
            common + "max_mailbox_size = 1M\n",
            domain=A,
            resolver=resolver,
            args=["--port-base", str(base_a), "--peer", f"{B}=127.0.0.1:{base_b}"],
        )
        self.proc_b, self.b = start_sandbox(
            common,
            domain=B,
            resolver=resolver,
            args=["--port-base", str(base_b), "--peer", f"{A}=127.0.0.1:{base_a}"],
        )
        assert self.a.info["smtp_port"] == base_a and self.b.info["smtp_port"] == base_b
        txt_a, txt_b = self.a.info["dkim_txt"], self.b.info["dkim_txt"]
        assert self.a.info["dkim_selector"] == "opendkim"
        assert txt_a.startswith("v=DKIM1; k=rsa; p=") and txt_a != txt_b
        # A's whole zone as `chatmail dns` prints it, B's key, and a
        # sibling domain with A's key. TTL 1: the outage test must not be
        # answered from a cache.
        zone_a = subprocess.run(
            [str(CHATMAIL_BIN), "dns", "--config", self.a.info["config"], "--ipv4", "127.0.0.1"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout
        self.zone_a = [
            re.sub(r" 3600 IN ", " 1 IN ", line)
            for line in zone_a.splitlines()
            if line and not line.startswith(";")
        ]
        assert any(line.startswith(f"opendkim._domainkey.{A}. ") for line in self.zone_a)
        self.dns = dns_server.Unbound(
            {f"{A}.": "static", f"{B}.": "static", f"{SIBLING}.": "static"},
            [
                *self.zone_a,
                f"opendkim._domainkey.{B}. 1 IN TXT {dns_server.txt_strings(txt_b)}",
                # A's key also published for a sibling domain.
                f"opendkim._domainkey.{SIBLING}. 1 IN TXT {dns_server.txt_strings(txt_a)}",
            ],
            port=self.dns_port,
        )
        self.key_a = (self.a.state_dir / "dkim/opendkim.private").read_bytes()

    def close(self):
        self.dns.stop()
        stop_sandbox(self.proc_a, self.a)
        stop_sandbox(self.proc_b, self.b)


@pytest.fixture(scope="module")
def net():
    n = Network()
    yield n
    n.close()








def header_block(raw):
    return raw.split(b"\r\n\r\n", 1)[0]


def send25(relay, raw, sender, rcpt):
    with relay.port25(sign=False) as smtp:
        try:
            smtp.sendmail(sender, [rcpt], raw)
        except smtplib_errors() as e:
            return e.smtp_code, e.smtp_error
    return 250, b""


def smtplib_errors():
    import smtplib

    return (smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused)


def test_encrypted_message_from_a_arrives_at_b_clean(net):
    a_user, b_user = account(net.a), account(net.b)
    with net.a.submission() as smtp:
        smtp.login(a_user, PASSWORD)
        smtp.sendmail(a_user, [b_user], encrypted_message(a_user, b_user))
    [raw] = net.b.wait_for_messages(b_user, PASSWORD, timeout=60)
    wait_log(net.a, "milter", r"DKIM signed.*Submission|Submission.*DKIM signed")
    assert re.search(rf"DKIM pass: d={A} aligned with From", log(net.b, "milter"))
    headers = header_block(raw)
    assert f"From: <{a_user}>".encode() in headers or a_user.encode() in headers
    for name in (b"DKIM-Signature:", b"Authentication-Results:", b"Received:"):
        assert name.lower() not in headers.lower(), headers.decode()
    # Nothing names the peer's address or a host on the way.
    assert b"127.0.0.1" not in headers and b"localhost" not in headers.lower()


def test_refused_at_b_without_valid_aligned_signature(net):
    a_user, b_user = account(net.a), account(net.b)
    signed = lambda raw, domain=None: dns_server.sign(raw, net.key_a, "opendkim", domain)  # noqa: E731
    msg = encrypted_message(a_user, b_user)
    cases = [
        ("unsigned, claiming a user of A", msg, NO_SIGNATURE),
        (
            "unsigned, claiming a user of B",
            encrypted_message(account(net.b), b_user),
            NO_SIGNATURE,
        ),
        (
            "signed by A, From of another domain",
            signed(encrypted_message("x@elsewhere.test", b_user), A),
            MISALIGNED,
        ),
        (
            "signed by A, body changed after signing",
            signed(msg).replace(b"-----END PGP MESSAGE-----", b"-----END PGP MESSAGE-----\r\n"),
            BROKEN,
        ),
        (
            "signed by the parent domain",
            signed(encrypted_message(f"x@sub.{A}", b_user), A),
            MISALIGNED,
        ),
        (
            "signed by a sibling domain",
            signed(msg, SIBLING),
            MISALIGNED,
        ),
    ]
    for name, raw, want in cases:
        assert send25(net.b, raw, a_user, b_user) == want, name
    # The control: the same message signed by A (with dkimpy) passes.
    assert send25(net.b, signed(msg), a_user, b_user) == (250, b"")
    assert len(net.b.wait_for_messages(b_user, PASSWORD, timeout=30)) == 1


def test_bounce_from_a_reaches_b_signed(net):
    a_user, b_user = account(net.a), account(net.b)
    # Over A's 1 MiB quota: A accepts at RCPT, its LMTP refuses, A bounces.
    big = grown_encrypted_message(b_user, a_user, 1_300_000)
    with net.b.submission() as smtp:
        smtp.login(b_user, PASSWORD)
        smtp.sendmail(b_user, [a_user], big)
    [bounce] = net.b.wait_for_messages(b_user, PASSWORD, timeout=90)
    assert f"MAILER-DAEMON@{A}".lower().encode() in header_block(bounce).lower()
    assert b"multipart/report" in header_block(bounce)
    wait_log(net.a, "milter", r"DKIM signed.*Local|Local.*DKIM signed")
    assert re.search(rf"DKIM pass: d={A} aligned with From", log(net.b, "milter"))


def test_dns_outage_defers_then_delivers(net):
    a_user, b_user = account(net.a), account(net.b)
    net.dns.stop()
    try:
        with net.a.submission() as smtp:
            smtp.login(a_user, PASSWORD)
            smtp.sendmail(a_user, [b_user], encrypted_message(a_user, b_user))
        # B answers 4.7.5; A keeps the message queued.
        wait_log(net.a, "postfix", r"451 4\.7\.5 DKIM key lookup failed temporarily", 60)
        assert b_user.encode() not in b"".join(
            net.b.wait_for_messages(b_user, PASSWORD, count=0)
        )
    finally:
        net.dns.start()
    subprocess.run(
        ["postqueue", "-c", net.a.info["postfix_config_dir"], "-f"], check=True, timeout=30
    )
    assert len(net.b.wait_for_messages(b_user, PASSWORD, timeout=60)) == 1


def test_delta_chat_across_relays(net):
    """Delta Chat on A and on B: Secure-Join across the relays, messages
    both ways with padlocks, read receipts both ways."""
    from test_deltachat import Clients, incoming, secure_join, wait_event
    from deltachat_rpc_client.const import MessageState

    with tempfile.TemporaryDirectory(prefix="dc-accounts-") as tmp:
        on_a = Clients(net.a, Path(tmp) / "a")
        on_b = Clients(net.b, Path(tmp) / "b")
        try:
            a, b = on_a.account(), on_b.account()
            assert on_a.creds[a.id]["email"].endswith("@" + A)
            assert on_b.creds[b.id]["email"].endswith("@" + B)
            b_chat, b_contact_at_a = secure_join(a, b, timeout=60)
            a_chat = a.get_contact_by_id(b_contact_at_a).create_chat()

            sent_b = b_chat.send_text("hello from B")
            msg_a = incoming(a, timeout=60)
            snap = msg_a.get_snapshot()
            assert (snap.text, snap.show_padlock, snap.chat_id) == ("hello from B", True, a_chat.id)

            sent_a = a_chat.send_text("hello from A")
            msg_b = incoming(b, timeout=60)
            snap = msg_b.get_snapshot()
            assert (snap.text, snap.show_padlock, snap.chat_id) == ("hello from A", True, b_chat.id)

            msg_b.mark_seen()
            wait_event(a, "MsgRead", 60, lambda ev: ev["msgId"] == sent_a.id)
            assert sent_a.get_snapshot().state == MessageState.OUT_MDN_RCVD
            msg_a.mark_seen()
            wait_event(b, "MsgRead", 60, lambda ev: ev["msgId"] == sent_b.id)
            assert sent_b.get_snapshot().state == MessageState.OUT_MDN_RCVD
        finally:
            on_a.close()
            on_b.close()
    for relay, peer in ((net.a, B), (net.b, A)):
        assert re.search(rf"DKIM pass: d={peer} aligned with From", log(relay, "milter"))


def test_doctor_checks_live_dns(net):
    """`chatmail doctor` compares the live DNS (through dns_resolver) with
    what `chatmail dns` prints: all OK for A, whose zone is published; the
    missing records of B are FAIL lines with the record to publish."""
    def dns_lines(relay):
        out = subprocess.run(
            [str(CHATMAIL_BIN), "doctor", "--config", relay.info["config"]],
            capture_output=True, text=True, timeout=120,
        ).stdout
        return re.findall(r"^(OK|FAIL) dns (\S+ \S+?):", out, re.M)

    a = dns_lines(net.a)
    assert len(a) == 12 and all(status == "OK" for status, _ in a), a
    assert ("OK", f"CNAME www.{A}.") in a, "setup --acme asks the CA for www. too"
    b = dict((name, status) for status, name in dns_lines(net.b))
    assert b[f"TXT opendkim._domainkey.{B}."] == "OK"
    assert b[f"MX {B}."] == "FAIL" and b[f"TXT _dmarc.{B}."] == "FAIL"


def test_signature_of_a_verifies_with_dkimpy(net):
    """What A's milter signs also verifies with dkimpy, an implementation
    independent of our signer and of mail-auth (B's verifier), on the bytes
    as they reached B. B's delivery header cleanup is off for this one
    message (last in this module, so no other test sees it off)."""
    etc = net.b.info["postfix_config_dir"]

    def postfix(*args):
        return subprocess.run(
            net.b.tool(*args), capture_output=True, text=True, check=True, timeout=30
        ).stdout

    cleanup = postfix("postconf", "-c", etc, "-h", "lmtp_header_checks").strip()
    assert cleanup, "B's delivery removes DKIM-Signature"
    postfix("postconf", "-c", etc, "-e", "lmtp_header_checks=")
    postfix("postfix", "-c", etc, "reload")
    try:
        a_user, b_user = account(net.a), account(net.b)
        with net.a.submission() as smtp:
            smtp.login(a_user, PASSWORD)
            smtp.sendmail(a_user, [b_user], encrypted_message(a_user, b_user))
        [raw] = net.b.wait_for_messages(b_user, PASSWORD, timeout=60)
    finally:
        postfix("postconf", "-c", etc, "-e", f"lmtp_header_checks={cleanup}")
        postfix("postfix", "-c", etc, "reload")
    headers = re.sub(rb"\r?\n[ \t]+", b" ", header_block(raw))
    d_of_a = rb"(?im)^DKIM-Signature:.*\bd=" + re.escape(A.encode()) + rb"(;|\s|$)"
    assert re.search(d_of_a, headers), headers
    keys = {f"opendkim._domainkey.{A}.": net.a.info["dkim_txt"]}
    assert dns_server.verify(raw, keys)
    # The check can fail: a signed header changed after signing.
    assert b"\nSubject: [...]\r\n" in raw
    assert not dns_server.verify(raw.replace(b"\nSubject: [...]", b"\nSubject: [..]", 1), keys)
