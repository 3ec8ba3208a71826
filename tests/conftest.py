"""Integration test harness: one `chatmail sandbox` relay (real Postfix and
Dovecot on 127.0.0.1 high ports) for the whole test session.

The sandbox must start; if Postfix or Dovecot cannot, every test errors out
loudly instead of being skipped.
"""

import atexit
import base64
import imaplib
import json
import random
import re
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import dkim
import pytest

import dns_server

REPO = Path(__file__).resolve().parent.parent
CHATMAIL_BIN = Path(os.environ.get("CHATMAIL_BIN", REPO / "target/debug/chatmail"))
# A Debian root (scripts/debian13-root) whose Postfix and Dovecot the relays
# run instead of the machine's: scripts/test runs the suite a second time
# with it set.
DEBIAN_ROOT = os.environ.get("CHATMAIL_DEBIAN_ROOT") or None


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


class TestSigner:
    """Stands in for the Internet's mail servers on port 25: signs with a
    test key (dkimpy) as the From domain; a real DNS server (unbound)
    answers every key lookup with that key. Started once, on first use."""

    instance = None

    def __init__(self):
        directory = Path(tempfile.mkdtemp(prefix="test-dkim-"))
        self.key, txt = dns_server.make_key(directory)
        self.dns = dns_server.Unbound(
            {".": "redirect"}, [f". 3600 IN TXT {dns_server.txt_strings(txt)}"]
        )

    @classmethod
    def get(cls):
        if cls.instance is None:
            cls.instance = TestSigner()
            atexit.register(lambda: cls.instance.dns.stop())
        return cls.instance

    def sign(self, raw):
        return dns_server.sign(raw, self.key, "test")


class _SigningSMTP(smtplib.SMTP):
    """Port 25 as other servers speak it: messages DKIM-signed."""

    def sendmail(self, from_addr, to_addrs, msg, *args, **kwargs):
        if isinstance(msg, str):
            msg = msg.encode()
        try:
            msg = TestSigner.get().sign(msg)
        except dkim.MessageFormatError:
            # Hostile MIME dkimpy cannot even parse goes unsigned: the
            # encryption verdict, which refuses it, comes before DKIM.
            pass
        return super().sendmail(from_addr, to_addrs, msg, *args, **kwargs)


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

    def port25(self, starttls=True, sign=True):
        """Port 25 after STARTTLS; with `sign`, messages are DKIM-signed as
        their From domain (see TestSigner)."""
        cls = _SigningSMTP if sign else smtplib.SMTP
        smtp = cls(self.host, self.info["smtp_port"], timeout=30)
        if starttls:
            smtp.starttls(context=self.tls)
        return smtp

    def tool(self, *cmd):
        """A Postfix/Dovecot command line of the relay's own installation."""
        exec_ = self.info.get("root_exec")
        return [exec_, *cmd] if exec_ else list(cmd)

    def tool_env(self):
        """An environment whose PATH finds the relay's own doveconf, doveadm
        and postconf first (shims into the Debian root, when there is one),
        for programs such as `chatmail doctor` that run them."""
        env = dict(os.environ)
        exec_ = self.info.get("root_exec")
        if exec_:
            shims = self.state_dir / "bin/root-tools"
            shims.mkdir(exist_ok=True)
            for tool in ["doveconf", "doveadm", "postconf"]:
                (shims / tool).write_text(f'#!/bin/sh\nexec {exec_} {tool} "$@"\n')
                (shims / tool).chmod(0o755)
            env["PATH"] = f"{shims}:{env.get('PATH', '')}"
        return env

    def doveadm(self, *args):
        return subprocess.run(
            self.tool("doveadm", "-c", self.info["dovecot_config"], *args),
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


# The password of the accounts the tests create.
PASSWORD = "s3cret-password"


def account(relay):
    """A fresh address of `relay`, created by logging in with PASSWORD."""
    addr = relay.fresh_addr()
    relay.imap_login(addr, PASSWORD).logout()
    return addr


def relay_log(relay, name):
    """The text of `relay`'s log `name` (log/NAME.log of its state)."""
    return (Path(relay.info["log_dir"]) / f"{name}.log").read_text()


def wait_log(relay, name, pattern, timeout=30):
    """Waits until `relay`'s log `name` matches `pattern`."""
    deadline = time.time() + timeout
    while not re.search(pattern, relay_log(relay, name)):
        assert time.time() < deadline, f"{name}.log never matched {pattern!r}"
        time.sleep(0.1)


def closed_port():
    """A loopback port nothing listens on (free a moment ago)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_ports(n):
    """The first of `n` consecutive free loopback ports (a sandbox's
    `--port-base` takes twelve: five mail, two web and five metrics ports)."""
    for _ in range(200):
        base = random.randrange(20000, 40000)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


def start_sandbox(
    params="", dovecot_local="", domain="chat.localhost", resolver=None, args=(), env=None
):
    """Starts `chatmail sandbox` in a fresh state directory whose
    chatmail.ini gets the extra `params` lines (and the sandbox's Dovecot
    the settings `dovecot_local`, which win), with extra command line `args`
    and environment `env`; returns (process, Relay)."""
    assert CHATMAIL_BIN.exists(), f"{CHATMAIL_BIN} not built (cargo build)"
    # Not pytest's tmp_path: its 0700 parents would lock out the vmail user.
    top = Path(tempfile.mkdtemp(prefix="chatmail-sandbox-", dir="/tmp"))
    top.chmod(0o755)
    state = top / "state"
    (state / "etc").mkdir(parents=True)
    # A test machine is busy (compilers, parallel relays): the load limit on
    # account creation is tested with an injected probe in the Rust tests.
    (state / "etc/chatmail.ini").write_text(
        f"[params]\nmail_domain = {domain}\n"
        f"mailboxes_dir = {state}/mail/{domain}\n"
        f"nocreate_file = {state}/chatmail-nocreate\n"
        f"appversions_file = {state}/appversions.json\n"
        f"max_load_1m = 1000\n"
        f"dns_resolver = {resolver or TestSigner.get().dns.address}\n{params}"
    )
    if dovecot_local:
        (state / "dovecot").mkdir()
        (state / "dovecot/local.conf").write_text(dovecot_local)
    out = open(top / "sandbox.out", "w")
    proc = subprocess.Popen(
        [str(CHATMAIL_BIN), "sandbox", "--state-dir", str(state), *args]
        + (["--root", DEBIAN_ROOT] if DEBIAN_ROOT else []),
        env=env,
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
    remove_sandbox_dir(relay.state_dir.parent)


def remove_sandbox_dir(top):
    """Removes a stopped sandbox's directory (mail, queue, logs and a copy
    of the binary: about 240 MB), unless CHATMAIL_KEEP_SANDBOX asks to keep
    it for a look."""
    if not os.environ.get("CHATMAIL_KEEP_SANDBOX"):
        shutil.rmtree(top, ignore_errors=True)


class PushGateway:
    """The stand-in notification gateway (an HTTP/2 server, the `push-gateway`
    binary of the push-gateway-stub crate): 410 for tokens starting with `gone-`."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="push-gateway-"))
        url_file, self.log = self.dir / "url", self.dir / "requests.jsonl"
        self.log.touch()
        self.proc = subprocess.Popen(
            [str(CHATMAIL_BIN.parent / "push-gateway"), str(url_file), str(self.log)]
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
        # The stand-in gateway speaks HTTP/2 without negotiation (h2c).
        "push_notification_h2c = true\n"
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


def _crc24(data):
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def grown_encrypted_message(sender, recipient, extra):
    """`encrypted_message` whose SEIPD packet carries `extra` more bytes:
    as large as a big attachment, and still one armored OpenPGP message
    (the relay checks packet framing, not the ciphertext)."""
    raw = encrypted_message(sender, recipient)
    nl = b"\r\n" if b"\r\n" in raw else b"\n"
    begin = raw.index(b"-----BEGIN PGP MESSAGE-----")
    end = raw.index(b"-----END PGP MESSAGE-----")
    lines = raw[begin:end].split(nl)[2:]
    data = base64.b64decode(b"".join(l for l in lines if l and not l.startswith(b"=")))
    packets, i = [], 0
    while i < len(data):
        tag, first = data[i] & 0x3F, data[i + 1]
        assert data[i] & 0x40 and (first < 224 or first == 255), "new-format, full lengths"
        if first < 192:
            head, length = 2, first
        elif first < 224:
            head, length = 3, ((first - 192) << 8) + data[i + 2] + 192
        else:
            head, length = 6, int.from_bytes(data[i + 2 : i + 6], "big")
        packets.append((tag, data[i + head : i + head + length]))
        i += head + length
    assert packets[-1][0] == 18, "ends with a SEIPD packet"
    body = packets[-1][1] + os.urandom(extra)
    grown = b"".join(
        (bytes([0xC0 | t, 0xFF]) + len(b).to_bytes(4, "big") + b)
        for t, b in packets[:-1] + [(18, body)]
    )
    text = base64.b64encode(grown)
    armored = [b"-----BEGIN PGP MESSAGE-----", b""]
    armored += [text[k : k + 64] for k in range(0, len(text), 64)]
    armored.append(b"=" + base64.b64encode(_crc24(grown).to_bytes(3, "big")))
    return raw[:begin] + nl.join(armored) + nl + raw[end:]


@pytest.fixture(scope="module")
def accounts(relay):
    """Two accounts of the relay, logged in once, with the password
    `PASSWORD`, for one test module."""
    a, b = relay.fresh_addr(), relay.fresh_addr()
    for addr in (a, b):
        relay.imap_login(addr, PASSWORD).logout()
    return a, b


@pytest.fixture
def nocreate(relay):
    path = Path(relay.info["nocreate_file"])
    path.touch()
    yield path
    path.unlink()
