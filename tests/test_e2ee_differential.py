"""Differential test of the MIME structure: the e2ee crate's corpus of real,
ambiguous and hostile messages, read by the parser the rules act on
(mail-parser, its reading recorded by the generator as "top_level") and by
Python's independent `email` parser (both its current and its compat32
policy, as clients differ the same way). Wherever they disagree on the top
level (content type, number and types of the parts), a reader could see
something else than what the relay checked, so the real milter behind real
Postfix must refuse the message, on submission and on port 25. The same
holds for the stored corpus the MIME fuzz target starts from, which keeps
the disagreements fuzzing found (fuzz/corpus/mime/found-*)."""

import email.policy
import json
import smtplib
import subprocess
from email.parser import BytesParser
from pathlib import Path

from conftest import MAKE_TEST_MAIL, PASSWORD, make_test_mail

ENCRYPTION_NEEDED = (523, b"5.7.1 Encryption Needed: Invalid Unencrypted Mail")
FROM_MISMATCH = (554, b"5.7.1 Invalid FROM: the From header must be the envelope sender")


def python_view(raw, policy):
    msg = BytesParser(policy=policy).parsebytes(raw)
    parts = [p.get_content_type() for p in msg.get_payload()] if msg.is_multipart() else None
    return {"content_type": msg.get_content_type(), "parts": parts}


def disagreements(cases):
    """{name: (ours, theirs)} for the cases where Python reads another top level."""
    out = {}
    for name, case in cases.items():
        ours = case["top_level"]
        for policy in (email.policy.default, email.policy.compat32):
            theirs = python_view(case["raw"], policy)
            if theirs != ours:
                out[name] = (ours, theirs)
                break
    return out


def message_id(case):
    raw = case["raw"]
    start = raw.index(b"Message-ID: <")
    return raw[start : raw.index(b">", start) + 1]


def send(smtp, case):
    try:
        smtp.sendmail(case["mail_from"], case["rcpt_to"], case["raw"])
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error
    return 250, b""


def test_python_agrees_on_what_real_writers_send():
    """The comparison itself is sound: on the shapes Delta Chat and
    Thunderbird write, the two parsers agree."""
    cases = make_test_mail("alice@example.org", "bob@example.org")
    differ = disagreements(cases)
    for name in (
        "encrypted-v4-seipdv1",
        "encrypted-v6-seipdv2",
        "encrypted-lf-line-endings",
        "structure-preamble-empty",
        "securejoin-vc-request",
        "autocrypt-setup-self",
        "bounce-null-sender",
        "cleartext",
    ):
        assert name not in differ, (name, differ.get(name))


def test_every_disagreement_is_refused(relay, accounts):
    a, b = accounts
    outgoing = make_test_mail(a, b)
    incoming = make_test_mail("someone@example.net", b)
    differ_out = disagreements(outgoing)
    differ_in = disagreements(incoming)
    # The corpus holds real disagreements: repeated Content-Type at the top
    # and in each part, header lines parsers end the header block at,
    # boundary look-alikes, Content-Type comments.
    assert len(differ_out) >= 8, differ_out
    assert {
        "dup-content-type-plain-first",
        "dup-content-type-control-part",
        "header-space-before-colon",
        "boundary-with-trailing-text",
    } <= set(differ_out)
    accepted = []
    for name in sorted(differ_out):
        with relay.submission() as smtp:
            smtp.login(a, PASSWORD)
            reply = send(smtp, outgoing[name])
            # Refused: 523, or 554 for a bounce's MAILER-DAEMON From.
            if reply[0] != 250:
                assert reply in (ENCRYPTION_NEEDED, FROM_MISMATCH), (name, reply)
            else:
                accepted.append((name, message_id(outgoing[name]), differ_out[name][0]))
    for name in sorted(differ_in):
        case = incoming[name]
        if case["rcpt_to"] != [b]:
            continue  # self-sent cases would be relaying
        with relay.port25() as smtp:
            reply = send(smtp, case)
            if reply != ENCRYPTION_NEEDED:
                assert reply[0] == 250, (name, reply)
                accepted.append((name, message_id(case), differ_in[name][0]))
    # Postfix rewrites some input before the milter sees it (a bare CR in
    # a header becomes a space), so a disagreement on the bytes sent can
    # vanish on the way. An accepted message is only right if what was
    # delivered reads, to Python, as what the rules checked.
    assert len(accepted) <= 2, accepted
    delivered = relay.wait_for_messages(b, PASSWORD, count=len(accepted))
    for name, mid, ours in accepted:
        [raw] = [m for m in delivered if mid in m]
        assert b"\r\r" not in raw and b"\r" not in raw.replace(b"\r\n", b""), name
        for policy in (email.policy.default, email.policy.compat32):
            assert python_view(raw, policy) == ours, (name, policy)


STORED_CORPUS = Path(__file__).parent.parent / "fuzz" / "corpus" / "mime"


def test_stored_corpus_disagreements_are_refused(relay, accounts):
    _, b = accounts
    files = sorted(STORED_CORPUS.iterdir())
    described = json.loads(
        subprocess.run(
            [str(MAKE_TEST_MAIL), "--describe", *map(str, files)],
            check=True,
            capture_output=True,
            timeout=60,
        ).stdout
    )
    cases = {
        Path(d["file"]).name: {"raw": Path(d["file"]).read_bytes(), "top_level": d["top_level"]}
        for d in described
    }
    differ = disagreements(cases)
    assert len(differ) >= 15, sorted(differ)
    assert {n for n in cases if n.startswith("found-")} <= set(differ)
    wrong = []
    for name in sorted(differ):
        # The null sender, so the bounce exception is in play too.
        case = dict(cases[name], mail_from="", rcpt_to=[b])
        with relay.port25() as smtp:
            reply = send(smtp, case)
        if reply != ENCRYPTION_NEEDED:
            wrong.append((name, reply, differ[name]))
    assert wrong == []
