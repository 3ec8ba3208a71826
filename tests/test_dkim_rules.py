"""DKIM verification on port 25 as a stranger with a DNS zone of their own
would probe it (docs/dkim.md, "Verification and failure classes"): a real
Postfix and milter, unbound serving the sender's zone with a good key, a
512-bit key and a key in testing mode (t=y), and a zone whose name server
never answers. Weak signatures count as absent, one message costs a bounded
number of lookups and seconds, an ambiguous From is refused, and the
sender's Delivered-To and X-Original-To do not reach the mailbox."""

import re
import smtplib
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

import dns_server
from conftest import PASSWORD, account, encrypted_message, start_sandbox, stop_sandbox

SENDER = "weak.test"
SILENT = "silent.test"
NO_SIGNATURE = (550, b"5.7.20 No DKIM signature found")
AMBIGUOUS = (550, b"5.7.22 Ambiguous From: the display name contains an address")
# The milter's whole verification ends within 20 s (docs/limits.md).
DEADLINE = 20


class World:
    def __init__(self):
        keys = Path(tempfile.mkdtemp(prefix="dkim-keys-"))
        self.good, good_txt = dns_server.make_key(keys, 2048, "good.pem")
        self.small, small_txt = dns_server.make_key(keys, 512, "small.pem")
        assert len(small_txt) < len(good_txt) / 2
        self.silent = dns_server.SilentNameServer()
        txt = dns_server.txt_strings
        self.dns = dns_server.Unbound(
            {f"{SENDER}.": "static"},
            [
                f"good._domainkey.{SENDER}. 1 IN TXT {txt(good_txt)}",
                f"small._domainkey.{SENDER}. 1 IN TXT {txt(small_txt)}",
                f"testing._domainkey.{SENDER}. 1 IN TXT "
                + txt(good_txt.replace("v=DKIM1;", "v=DKIM1; t=y;")),
            ],
            stubs={f"{SILENT}.": self.silent.address},
        )
        self.proc, self.relay = start_sandbox(resolver=self.dns.address)

    def close(self):
        stop_sandbox(self.proc, self.relay)
        self.dns.stop()
        self.silent.close()


@pytest.fixture(scope="module")
def world():
    w = World()
    yield w
    w.close()




def send25(relay, raw, sender, rcpt):
    """The answer to the message on port 25: (code, text)."""
    with relay.port25(sign=False) as smtp:
        try:
            smtp.sendmail(sender, [rcpt], raw)
        except (smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused) as e:
            return e.smtp_code, e.smtp_error
    return 250, b""


def milter_log(relay):
    return (Path(relay.info["log_dir"]) / "milter.log").read_text()


def scrape(relay):
    with urllib.request.urlopen(relay.info["metrics"]["milter"], timeout=10) as resp:
        return resp.read().decode()


def sample(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_weak_signatures_count_as_absent(world):
    relay, rcpt = world.relay, account(world.relay)
    sender = f"alice@{SENDER}"
    msg = encrypted_message(sender, rcpt)
    sign = lambda **kw: dns_server.sign_as(msg, **kw)  # noqa: E731
    good = dict(key_pem=world.good, selector="good", domain=SENDER)
    cases = [
        ("rsa-sha1", sign(**good, algorithm=b"rsa-sha1")),
        ("512-bit key", sign(key_pem=world.small, selector="small", domain=SENDER)),
        ("key in testing mode (t=y)", sign(key_pem=world.good, selector="testing", domain=SENDER)),
        ("From not in h=", sign(**good, headers=(b"to", b"subject", b"date", b"message-id"))),
        ("t= 10^8 s in the future", sign(**good, timestamp=time.time() + 1e8)),
    ]
    for name, raw in cases:
        assert send25(relay, raw, sender, rcpt) == NO_SIGNATURE, name
    log = milter_log(relay)
    for reason in [
        "rsa-sha1 is not accepted (RFC 8301)",
        "512-bit RSA key (RFC 8301: at least 1024)",
        "key in testing mode, t=y (RFC 6376 3.6.1)",
        "From is not signed (RFC 6376 5.4)",
        "timestamp in the future",
    ]:
        assert reason in log, reason
    # The controls: the same key and signer pass, with t= a little ahead
    # (clock skew) and with the default header list.
    assert send25(relay, sign(**good, timestamp=time.time() + 300), sender, rcpt) == (250, b"")
    assert send25(relay, sign(**good), sender, rcpt) == (250, b"")
    assert len(relay.wait_for_messages(rcpt, PASSWORD, count=2, timeout=30)) == 2


def with_from(msg, value):
    """`msg` with its From field's value replaced by `value`."""
    return re.sub(rb"^From: .*$", f"From: {value}".encode(), msg, count=1, flags=re.M)


def test_ambiguous_from_is_refused(world):
    relay, rcpt = world.relay, account(world.relay)
    other_user = account(relay)
    msg = encrypted_message(f"alice@{SENDER}", rcpt)
    # One of our own users in the display name, the signed domain's address
    # in angle brackets: a reader may show either.
    spoof = with_from(msg, f"{other_user} <alice@{SENDER}>")
    assert spoof != msg
    signed = dns_server.sign_as(spoof, key_pem=world.good, selector="good", domain=SENDER)
    assert send25(relay, signed, f"alice@{SENDER}", rcpt) == AMBIGUOUS
    # Quoted, the display name is unambiguous.
    quoted = with_from(msg, f'"{other_user}" <alice@{SENDER}>')
    signed = dns_server.sign_as(quoted, key_pem=world.good, selector="good", domain=SENDER)
    assert send25(relay, signed, f"alice@{SENDER}", rcpt) == (250, b"")


def test_fifty_signatures_from_a_silent_name_server(world):
    """50 signatures of the From domain, each with its own selector, whose
    name server never answers: five names are looked up, at once, and
    Postfix has its answer within the deadline; the milter's connections
    are all closed afterwards."""
    relay, rcpt = world.relay, account(world.relay)
    sender = f"mallory@{SILENT}"
    raw = encrypted_message(sender, rcpt)
    for i in range(50):
        raw = dns_server.sign_as(raw, key_pem=world.good, selector=f"s{i}", domain=SILENT)
    assert raw.count(b"DKIM-Signature:") == 50
    before = scrape(relay)
    started = time.monotonic()
    answer = send25(relay, raw, sender, rcpt)
    took = time.monotonic() - started
    print(f"50 signatures from a silent name server: answered in {took:.1f} s: {answer}")
    assert answer[0] == 451 and answer[1].startswith(b"4.7.5 "), answer
    assert took < DEADLINE + 2, took
    # The five topmost signatures: the last five made.
    asked = {n for n in world.silent.names if n.endswith(f"._domainkey.{SILENT}")}
    assert 1 <= len(asked) <= 5, asked
    assert asked <= {f"s{i}._domainkey.{SILENT}" for i in range(45, 50)}, asked
    # The SMTP session is over: Postfix closed its milter connection, and
    # the milter holds none.
    deadline = time.monotonic() + 10
    while sample(scrape(relay), "chatmail_open_connections") != 0:
        assert time.monotonic() < deadline, "the milter still holds connections"
        time.sleep(0.2)
    after = scrape(relay)
    series = 'chatmail_milter_messages_total{direction="incoming",verdict="tempfail"}'
    assert sample(after, series) == sample(before, series) + 1


def test_senders_trace_fields_do_not_reach_the_mailbox(world):
    relay, rcpt = world.relay, account(world.relay)
    sender = f"alice@{SENDER}"
    forged = (
        b"Delivered-To: forged-delivered@elsewhere.test\r\n"
        b"X-Original-To: forged-original@elsewhere.test\r\n"
    )
    msg = encrypted_message(sender, rcpt, extra_headers=forged)
    signed = dns_server.sign_as(msg, key_pem=world.good, selector="good", domain=SENDER)
    assert send25(relay, signed, sender, rcpt) == (250, b"")
    [stored] = relay.wait_for_messages(rcpt, PASSWORD, timeout=30)
    head = stored.split(b"\r\n\r\n", 1)[0]
    assert b"forged-delivered" not in head and b"forged-original" not in head, head
    assert b"x-original-to:" not in head.lower(), head
    # What Dovecot's LMTP writes itself names the mailbox, and only once.
    delivered = [
        v.strip().strip(b"<>") for v in re.findall(rb"^Delivered-To:(.*)$", head, re.M | re.I)
    ]
    assert delivered in ([], [rcpt.encode()]), delivered
