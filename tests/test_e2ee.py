"""Only end-to-end encrypted mail passes, through real Postfix (milter and
policy service) into real Dovecot. The messages come from the e2ee crate's
generator: real OpenPGP/MIME encrypted with sequoia, and hostile variants."""

import email
import email.utils
import os
import signal
import smtplib
from pathlib import Path

import pytest
from conftest import PASSWORD, encrypted_message, make_test_mail

ENCRYPTION_NEEDED = (523, b"5.7.1 Encryption Needed: Invalid Unencrypted Mail")
FROM_MISMATCH = (554, b"5.7.1 Invalid FROM: the From header must be the envelope sender")


def from_header(case):
    return email.utils.parseaddr(email.message_from_bytes(case["raw"])["From"])[1]


def send(smtp, case):
    """Sends one corpus case with its own envelope; returns (code, text)."""
    try:
        smtp.sendmail(case["mail_from"], case["rcpt_to"], case["raw"])
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error
    except smtplib.SMTPRecipientsRefused as e:
        [(code, text)] = e.recipients.values()
        return code, text
    except smtplib.SMTPSenderRefused as e:
        return e.smtp_code, e.smtp_error
    return 250, b""


def test_outgoing_corpus(relay, accounts):
    a, b = accounts
    cases = make_test_mail(a, b)
    assert len(cases) >= 30
    accepted = []
    for name, case in cases.items():
        # A connection each: Postfix slows down and then drops clients
        # that collect many errors (smtpd_soft/hard_error_limit).
        with relay.submission() as smtp:
            smtp.login(a, PASSWORD)
            code, text = send(smtp, case)
        if case["outgoing"] == "accept":
            assert code == 250, (name, code, text)
            accepted.append(name)
        elif from_header(case) != case["mail_from"]:
            assert (code, text) == FROM_MISMATCH, name
        else:
            assert (code, text) == ENCRYPTION_NEEDED, (name, code, text)
    # Everything accepted really arrives (self-sent ones at A).
    to_b = [n for n in accepted if cases[n]["rcpt_to"] == [b]]
    to_a = [n for n in accepted if cases[n]["rcpt_to"] == [a]]
    assert {"encrypted-v6-seipdv2", "encrypted-legacy-pkesk-headers"} <= set(to_b)
    assert to_a == ["autocrypt-setup-self"]
    assert len(relay.wait_for_messages(b, PASSWORD, count=len(to_b))) == len(to_b)
    assert len(relay.wait_for_messages(a, PASSWORD, count=len(to_a))) == len(to_a)


def test_incoming_corpus_to_an_enforcing_recipient(relay, accounts):
    _, b = accounts
    sender = "someone@example.net"
    cases = make_test_mail(sender, b)
    before = len(relay.wait_for_messages(b, PASSWORD, count=0))
    accepted = 0
    for name, case in cases.items():
        if case["rcpt_to"] != [b]:
            continue  # self-sent cases would be relaying
        with relay.port25() as smtp:
            code, text = send(smtp, case)
        if case["incoming"] == "accept":
            assert code == 250, (name, code, text)
            accepted += 1
        else:
            assert (code, text) == ENCRYPTION_NEEDED, (name, code, text)
    assert accepted >= 8
    got = relay.wait_for_messages(b, PASSWORD, count=before + accepted)
    assert len(got) == before + accepted


def test_incoming_cleartext_only_where_not_enforced(relay):
    enforcing, relaxed = relay.fresh_addr(), relay.fresh_addr()
    for addr in (enforcing, relaxed):
        relay.imap_login(addr, PASSWORD).logout()
    (relay.mailboxes_dir / relaxed / "enforceE2EEincoming").unlink()
    cleartext = make_test_mail("someone@example.net", relaxed)["cleartext"]["raw"]

    with relay.port25() as smtp:
        smtp.sendmail("someone@example.net", [relaxed], cleartext)
        # One enforcing recipient refuses the message for all.
        with pytest.raises(smtplib.SMTPDataError) as e:
            smtp.sendmail("someone@example.net", [relaxed, enforcing], cleartext)
        assert (e.value.smtp_code, e.value.smtp_error) == ENCRYPTION_NEEDED
    [raw] = relay.wait_for_messages(relaxed, PASSWORD)
    assert b"Content-Type: text/plain" in raw


def test_unknown_local_recipients_are_refused_at_rcpt(relay, accounts):
    a, b = accounts
    nobody = relay.fresh_addr()
    with relay.port25() as smtp:
        smtp.ehlo()
        smtp.mail("someone@example.net")
        code, text = smtp.rcpt(nobody)
        assert code == 550, text
        assert text == f"5.1.1 <{nobody}>: Recipient address rejected: no such user".encode()
        assert smtp.rcpt(b)[0] == 250
    with relay.submission() as smtp:
        smtp.login(a, PASSWORD)
        smtp.mail(a)
        assert smtp.rcpt(nobody)[0] == 550
        assert not (relay.mailboxes_dir / nobody).exists()


def test_send_rate_is_limited_per_message(tight_relay):
    relay = tight_relay
    a, b = relay.fresh_addr(), relay.fresh_addr()
    many = [relay.fresh_addr() for _ in range(50)]
    for addr in (a, b, *many):
        relay.imap_login(addr, PASSWORD).logout()
    with relay.submission() as smtp:
        smtp.login(a, PASSWORD)
        # The burst is 3 messages, however many recipients each has.
        for _ in range(3):
            smtp.sendmail(a, many, encrypted_message(a, b))
        with pytest.raises(smtplib.SMTPDataError) as e:
            smtp.sendmail(a, [b], encrypted_message(a, b))
    assert e.value.smtp_code == 450
    assert e.value.smtp_error.startswith(b"4.7.1 ")
    # Another user has a budget of their own.
    with relay.submission() as smtp:
        smtp.login(b, PASSWORD)
        smtp.sendmail(b, [a], encrypted_message(b, a))
    assert len(relay.wait_for_messages(many[-1], PASSWORD, count=3)) == 3


def assert_deferred(relay, b, sender=None):
    """Mail to `b` (from `sender` on submission, else from outside on port
    25) gets a 4xx at some stage and does not arrive."""
    before = len(relay.wait_for_messages(b, PASSWORD, count=0))
    mail_from = sender or "x@example.net"
    message = encrypted_message(mail_from, b)
    # Postfix answers 4xx at whatever stage it needs the helper: the milter
    # is asked from the connection on, the policy service at RCPT.
    with pytest.raises(
        (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused)
    ) as e:
        with relay.submission() if sender else relay.port25() as smtp:
            if sender:
                smtp.login(sender, PASSWORD)
            smtp.sendmail(mail_from, [b], message)
    err = e.value
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        [(code, _)] = err.recipients.values()
    else:
        code = err.smtp_code
    assert 400 <= code < 500, err
    assert len(relay.wait_for_messages(b, PASSWORD, count=0)) == before


def test_an_unreachable_milter_defers_mail(relay, accounts):
    a, b = accounts
    socket = Path(relay.info["sockets"]["milter"])
    mode = socket.stat().st_mode
    socket.chmod(0)  # Postfix can no longer connect
    try:
        assert_deferred(relay, b)
        assert_deferred(relay, b, sender=a)
    finally:
        socket.chmod(mode)


def test_a_hanging_policy_service_defers_mail(relay, accounts):
    _, b = accounts
    pid = relay.info["pids"]["policy"]
    os.kill(pid, signal.SIGSTOP)  # connected, but never answers
    try:
        assert_deferred(relay, b)
    finally:
        os.kill(pid, signal.SIGCONT)
    # And once it answers again, mail flows.
    with relay.port25() as smtp:
        smtp.sendmail("x@example.net", [b], encrypted_message("x@example.net", b))


def with_from(raw, *from_values):
    """The message with its From header(s) replaced by `from_values`."""
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"from:")]
    froms = [b"From: " + v.encode() for v in from_values]
    return b"\r\n".join(froms + lines) + b"\r\n\r\n" + body


def test_from_header_variants(relay, accounts):
    a, b = accounts
    raw = encrypted_message(a, b)
    local, domain = a.split("@")
    cases = [
        (f'"Alice Example" <{a}>', 250),
        (f"Alice <{local.upper()}@{domain.upper()}>", 250),
        (f"<{a}>, <{b}>", FROM_MISMATCH),
        (f"Alice <{b}>", FROM_MISMATCH),
        (f'"{a}" <{b}>', FROM_MISMATCH),
    ]
    for value, want in cases:
        with relay.submission() as smtp:
            smtp.login(a, PASSWORD)
            got = send(smtp, {"mail_from": a, "rcpt_to": [b], "raw": with_from(raw, value)})
        assert got == want or got[0] == want, (value, got)
    with relay.submission() as smtp:
        smtp.login(a, PASSWORD)
        twice = with_from(raw, f"<{a}>", f"<{a}>")
        assert send(smtp, {"mail_from": a, "rcpt_to": [b], "raw": twice}) == FROM_MISMATCH


def big_encrypted_message(sender, recipient, size):
    """An OpenPGP/MIME message of about `size` bytes: one SEIPD packet (new
    format, five-octet length) whose body is random. The relay only checks
    the packet structure, which is what a real message this large has."""
    import base64

    body = b"\x01" + os.urandom(size * 3 // 4 - 1024)
    packet = bytes([0xC0 | 18, 0xFF]) + len(body).to_bytes(4, "big") + body
    b64 = base64.b64encode(packet).decode()
    armor = "\r\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    return (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: ...\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
        ' boundary="b0undary"\r\n\r\n'
        "--b0undary\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
        "--b0undary\r\nContent-Type: application/octet-stream\r\n\r\n"
        f"-----BEGIN PGP MESSAGE-----\r\n\r\n{armor}\r\n-----END PGP MESSAGE-----\r\n"
        "--b0undary--\r\n"
    ).encode()


def test_message_size_limit(relay, accounts):
    a, b = accounts
    limit = 31457280  # max_message_size's default, Postfix's message_size_limit
    fits = big_encrypted_message(a, b, 30_000_000)
    assert len(fits) < limit
    too_big = big_encrypted_message(a, b, limit + 100_000)
    assert len(too_big) > limit
    before = len(relay.wait_for_messages(b, PASSWORD, count=0))
    with relay.submission() as smtp:
        smtp.login(a, PASSWORD)
        assert send(smtp, {"mail_from": a, "rcpt_to": [b], "raw": fits}) == (250, b"")
    with relay.submission() as smtp:
        smtp.login(a, PASSWORD)
        code, text = send(smtp, {"mail_from": a, "rcpt_to": [b], "raw": too_big})
    assert code == 552, text
    got = relay.wait_for_messages(b, PASSWORD, count=before + 1)
    assert len(got) == before + 1
    assert max(len(m) for m in got) >= 30_000_000
