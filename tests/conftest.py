"""Integration test harness: one `chatmail sandbox` relay (real Postfix and
Dovecot on 127.0.0.1 high ports) for the whole test session.

The sandbox must start; if Postfix or Dovecot cannot, every test errors out
loudly instead of being skipped.
"""

import imaplib
import json
import random
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHATMAIL_BIN = Path(os.environ.get("CHATMAIL_BIN", REPO / "target/debug/chatmail"))


class _IMAP4FromRandomLoopback(imaplib.IMAP4_SSL):
    """IMAPS from a random 127.x.y.z source address.

    Dovecot delays the next login from an address after a failed one (its
    auth penalty, up to 15 s); tests of refused logins would otherwise slow
    down every test after them.
    """

    def _create_socket(self, timeout):
        source = "127.%d.%d.%d" % tuple(random.randrange(1, 255) for _ in range(3))
        sock = socket.create_connection(
            (self.host, self.port), timeout, source_address=(source, 0)
        )
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class Relay:
    """A running sandbox relay, described by its relay.json."""

    def __init__(self, state_dir: Path, info: dict):
        self.state_dir = state_dir
        self.info = info
        self.domain = info["domain"]
        self.host = info["host"]
        self.mailboxes_dir = Path(info["mailboxes_dir"])
        self.tls = ssl.create_default_context(cafile=info["tls_cert"])

    def fresh_addr(self, length=9):
        return uuid.uuid4().hex[:length] + "@" + self.domain

    def imap(self):
        return _IMAP4FromRandomLoopback(
            self.host, self.info["imaps_port"], ssl_context=self.tls
        )

    def imap_login(self, addr, password):
        """Logs in over IMAPS; returns the logged-in connection or raises."""
        conn = self.imap()
        try:
            conn.login(addr, password)
        except Exception:
            conn.logout()
            raise
        return conn

    def can_login(self, addr, password):
        try:
            self.imap_login(addr, password).logout()
            return True
        except imaplib.IMAP4.error:
            return False

    def submission(self):
        """An SMTP connection to port 587 after STARTTLS."""
        smtp = smtplib.SMTP(self.host, self.info["submission_port"], timeout=30)
        smtp.starttls(context=self.tls)
        return smtp

    def submissions(self):
        return smtplib.SMTP_SSL(
            self.host, self.info["submissions_port"], context=self.tls, timeout=30
        )

    def port25(self, starttls=True):
        smtp = smtplib.SMTP(self.host, self.info["smtp_port"], timeout=30)
        if starttls:
            smtp.starttls(context=self.tls)
        return smtp

    def doveadm(self, *args):
        return subprocess.run(
            ["doveadm", "-c", self.info["dovecot_config"], *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def password_file(self, addr):
        return self.mailboxes_dir / addr / "password"

    def wait_for_messages(self, addr, password, count=1, timeout=15):
        """Polls INBOX until it holds `count` messages; returns their raw bytes."""
        deadline = time.time() + timeout
        while True:
            conn = self.imap_login(addr, password)
            try:
                conn.select("INBOX")
                typ, data = conn.search(None, "ALL")
                nums = data[0].split()
                if len(nums) >= count:
                    out = []
                    for n in nums:
                        typ, msg = conn.fetch(n, "(RFC822)")
                        out.append(msg[0][1])
                    return out
            finally:
                conn.logout()
            if time.time() > deadline:
                raise AssertionError(f"{addr} got {len(nums)} of {count} messages")
            time.sleep(0.2)


def start_sandbox(params="", dovecot_local=""):
    """Starts `chatmail sandbox` in a fresh state directory whose
    chatmail.ini gets the extra `params` lines (and the sandbox's Dovecot
    the settings `dovecot_local`, which win); returns (process, Relay)."""
    assert CHATMAIL_BIN.exists(), f"{CHATMAIL_BIN} not built (cargo build)"
    # Not pytest's tmp_path: its 0700 parents would lock out the vmail user.
    top = Path(tempfile.mkdtemp(prefix="chatmail-sandbox-", dir="/tmp"))
    top.chmod(0o755)
    state = top / "state"
    (state / "etc").mkdir(parents=True)
    domain = "chat.localhost"
    # A test machine is busy (compilers, parallel relays): the load limit on
    # account creation is tested with an injected probe in the Rust tests.
    (state / "etc/chatmail.ini").write_text(
        f"[params]\nmail_domain = {domain}\n"
        f"mailboxes_dir = {state}/mail/{domain}\n"
        f"nocreate_file = {state}/chatmail-nocreate\n"
        f"max_load_1m = 1000\n{params}"
    )
    if dovecot_local:
        (state / "dovecot").mkdir()
        (state / "dovecot/local.conf").write_text(dovecot_local)
    out = open(top / "sandbox.out", "w")
    proc = subprocess.Popen(
        [str(CHATMAIL_BIN), "sandbox", "--state-dir", str(state)],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    relay_json = state / "relay.json"
    deadline = time.time() + 60
    while not relay_json.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log = (top / "sandbox.out").read_text()
            pytest.fail(f"chatmail sandbox did not start:\n{log}", pytrace=False)
        time.sleep(0.1)
    return proc, Relay(state, json.loads(relay_json.read_text()))


def stop_sandbox(proc, relay):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, (relay.state_dir.parent / "sandbox.out").read_text()


class PushGateway:
    """The stand-in notification gateway (an HTTP/2 server, see the metadata
    crate's push-gateway example): 410 for tokens starting with `gone-`."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="push-gateway-"))
        url_file, self.log = self.dir / "url", self.dir / "requests.jsonl"
        self.log.touch()
        self.proc = subprocess.Popen(
            [str(CHATMAIL_BIN.parent / "examples" / "push-gateway"), str(url_file), str(self.log)]
        )
        deadline = time.time() + 30
        while not url_file.exists():
            assert self.proc.poll() is None and time.time() < deadline, "gateway did not start"
            time.sleep(0.05)
        self.url = url_file.read_text()

    def requests(self):
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def wait_for(self, token, count=1, timeout=15):
        deadline = time.time() + timeout
        while True:
            got = [r for r in self.requests() if r["token"] == token]
            if len(got) >= count:
                return got
            assert time.time() < deadline, f"{len(got)} of {count} pushes for a token"
            time.sleep(0.05)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="session")
def push_gateway():
    gateway = PushGateway()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def relay(push_gateway):
    # The send rate limit has its own relay below; here it must not get in
    # the way of tests that send a whole corpus from one account.
    proc, relay = start_sandbox(
        "max_user_send_per_minute = 6000\nmax_user_send_burst_size = 1000\n"
        f"push_notification_url = {push_gateway.url}\n"
    )
    yield relay
    stop_sandbox(proc, relay)


@pytest.fixture(scope="session")
def tight_relay():
    """A relay with a low send rate (1/min, burst 3) and a 10 MiB quota."""
    proc, relay = start_sandbox(
        "max_user_send_per_minute = 1\nmax_user_send_burst_size = 3\n"
        "max_mailbox_size = 10M\n"
    )
    yield relay
    stop_sandbox(proc, relay)


MAKE_TEST_MAIL = CHATMAIL_BIN.parent / "examples" / "make-test-mail"


def make_test_mail(sender, *recipients):
    """The e2ee crate's corpus of real and hostile messages from `sender`,
    as {name: entry}, each entry with its raw bytes under "raw"."""
    out = Path(tempfile.mkdtemp(prefix="testmail-"))
    args = [str(MAKE_TEST_MAIL), "--from", sender, "--out", str(out)]
    for r in recipients:
        args += ["--to", r]
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    cases = json.loads((out / "manifest.json").read_text())
    for case in cases:
        case["raw"] = (out / case["file"]).read_bytes()
    return {case["name"]: case for case in cases}


def encrypted_message(sender, recipient, extra_headers=b""):
    """A real OpenPGP/MIME message from `sender` to `recipient`."""
    raw = make_test_mail(sender, recipient)["encrypted-v4-seipdv1"]["raw"]
    return extra_headers + raw


@pytest.fixture
def nocreate(relay):
    path = Path(relay.info["nocreate_file"])
    path.touch()
    yield path
    path.unlink()
