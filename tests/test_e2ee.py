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
from conftest import encrypted_message, make_test_mail

PASSWORD = "s3cret-password"
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


@pytest.fixture(scope="module")
def accounts(relay):
    a, b = relay.fresh_addr(), relay.fresh_addr()
    for addr in (a, b):
        relay.imap_login(addr, PASSWORD).logout()
    return a, b


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
    relay.wait_for_messages(b, PASSWORD, count=len(to_b))
    relay.wait_for_messages(a, PASSWORD, count=len(to_a))


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
    relay.wait_for_messages(b, PASSWORD, count=before + accepted)


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
    a, b, c = (relay.fresh_addr() for _ in range(3))
    for addr in (a, b, c):
        relay.imap_login(addr, PASSWORD).logout()
    with relay.submission() as smtp:
        smtp.login(a, PASSWORD)
        # The burst is 3 messages, however many recipients each has.
        for _ in range(3):
            smtp.sendmail(a, [b, c], encrypted_message(a, b))
        with pytest.raises(smtplib.SMTPDataError) as e:
            smtp.sendmail(a, [b], encrypted_message(a, b))
    assert e.value.smtp_code == 450
    assert e.value.smtp_error.startswith(b"4.7.1 ")
    # Another user has a budget of their own.
    with relay.submission() as smtp:
        smtp.login(b, PASSWORD)
        smtp.sendmail(b, [a], encrypted_message(b, a))


def assert_deferred(relay, b, **smtp_kwargs):
    """Mail to `b` gets a 4xx at some stage and does not arrive."""
    before = len(relay.wait_for_messages(b, PASSWORD, count=0))
    message = encrypted_message("x@example.net", b)
    # Postfix answers 4xx at whatever stage it needs the helper: the milter
    # is asked from the connection on, the policy service at RCPT.
    with pytest.raises(
        (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused)
    ) as e:
        with relay.port25() as smtp:
            smtp.sendmail("x@example.net", [b], message)
    err = e.value
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        [(code, _)] = err.recipients.values()
    else:
        code = err.smtp_code
    assert 400 <= code < 500, err
    assert len(relay.wait_for_messages(b, PASSWORD, count=0)) == before


def test_an_unreachable_milter_defers_mail(relay, accounts):
    _, b = accounts
    socket = Path(relay.info["sockets"]["milter"])
    mode = socket.stat().st_mode
    socket.chmod(0)  # Postfix can no longer connect
    try:
        assert_deferred(relay, b)
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
