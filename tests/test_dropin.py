"""A chatmaild operator's chatmail.ini through the real Postfix and Dovecot:
connection limits, /shared/admin, the shipped appversions list, push to a
plain HTTP/1.1 gateway, and the DISABLED marker."""

import http.server
import imaplib
import json
import smtplib
import subprocess
import threading
import time

import pytest
from conftest import CHATMAIL_BIN, REPO, encrypted_message, start_sandbox, stop_sandbox

PASSWORD = "s3cret-password"
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))


class Http1Gateway:
    """Python's http.server as the notification gateway: HTTP/1.1 only.
    Tokens starting with `fail-` are answered 500 once, then 200."""

    def __init__(self):
        self.requests = []  # (version, path, body, status)
        self.failed = set()
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                token = body.decode()
                status = 200
                if token.startswith("fail-") and token not in gateway.failed:
                    gateway.failed.add(token)
                    status = 500
                gateway.requests.append((self.request_version, self.path, token, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify?api_key=SECRETKEY"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, token, count=1, timeout=30):
        deadline = time.time() + timeout
        while True:
            got = [r for r in self.requests if r[2] == token]
            if len(got) >= count:
                return got
            assert time.time() < deadline, f"{len(got)} of {count} POSTs of {token}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def gateway():
    g = Http1Gateway()
    yield g
    g.server.shutdown()


@pytest.fixture(scope="module")
def dropin_relay(gateway):
    proc, relay = start_sandbox(
        "max_imap_connections = 12345\n"
        "max_smtp_connections = 1500\n"
        "privacy_mail = privacy@example.org\n"
        f"push_notification_url = {gateway.url}\n"
    )
    yield relay
    stop_sandbox(proc, relay)


def getmetadata(conn, mailbox, key):
    typ, data = conn._simple_command("GETMETADATA", mailbox, key)
    assert typ == "OK", (typ, data)
    parts = conn._untagged_response(typ, data, "METADATA")[1]
    return parts


def test_connection_limits_reach_dovecot_and_postfix(dropin_relay):
    dovecot = subprocess.run(
        dropin_relay.tool("doveconf", "-c", dropin_relay.info["dovecot_config"], "-n"),
        capture_output=True, text=True, check=True,
    ).stdout
    for service in ("imap", "imap-login"):
        block = dovecot.split(f"\nservice {service} {{\n", 1)[1].split("\n}\n", 1)[0]
        assert "  process_limit = 12345\n" in block + "\n", block
    etc = dropin_relay.info["postfix_config_dir"]
    maxproc = subprocess.run(
        dropin_relay.tool("postconf", "-c", etc, "-F"), capture_output=True, text=True, check=True
    ).stdout
    params = subprocess.run(
        dropin_relay.tool("postconf", "-c", etc, "-P"), capture_output=True, text=True, check=True
    ).stdout
    for port in ("submission_port", "submissions_port"):
        name = f"127.0.0.1:{dropin_relay.info[port]}/inet"
        assert f"{name}/process_limit = 1500\n" in maxproc, maxproc
        assert f"{name}/smtpd_client_connection_count_limit = 300\n" in params, params


def test_server_admin_and_appversions(dropin_relay):
    conn = dropin_relay.imap_login(dropin_relay.fresh_addr(), PASSWORD)
    parts = getmetadata(conn, '""', "/shared/admin")
    assert parts[0] == (b'"" (/shared/admin {26}', b"mailto:privacy@example.org"), parts
    parts = getmetadata(conn, '""', "/shared/vendor/deltachat/appversions")
    # A literal: (b'"" (/shared/vendor/deltachat/appversions {N}', b'<json>')
    value = next(p[1] for p in parts if isinstance(p, tuple))
    assert b"\n" not in value
    shipped = json.loads((REPO / "packaging/appversions.json").read_text())
    assert json.loads(value) == shipped
    conn.logout()


def test_push_over_http1_with_the_key_kept_out_of_the_log(dropin_relay, gateway):
    addr = dropin_relay.fresh_addr()
    conn = dropin_relay.imap_login(addr, PASSWORD)
    typ, _ = conn._simple_command(
        "SETMETADATA", "INBOX", '(/private/devicetoken "fail-tok")'
    )
    assert typ == "OK"
    conn.logout()
    with dropin_relay.port25() as smtp:
        smtp.sendmail("a@example.net", [addr], encrypted_message("a@example.net", addr))
    # The first POST gets 500; the retry (after the back-off) 200.
    got = gateway.wait_for("fail-tok", count=2, timeout=60)
    assert [(v, s) for v, _, _, s in got] == [("HTTP/1.1", 500), ("HTTP/1.1", 200)]
    assert got[0][1] == "/notify?api_key=SECRETKEY"
    log = (dropin_relay.state_dir / "log/metadata.log").read_text()
    assert "SECRETKEY" not in log
    assert "push gateway failing" in log and "?<redacted>" in log, log
    assert "push gateway answers again after 1 failed attempts" in log, log


def chatmail(*args):
    return subprocess.run(
        [str(CHATMAIL_BIN), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_disabled_address_through_postfix_and_dovecot(dropin_relay):
    relay = dropin_relay
    addr, other = relay.fresh_addr(), relay.fresh_addr()
    relay.imap_login(addr, PASSWORD).logout()
    relay.imap_login(other, PASSWORD).logout()
    ini = relay.info["config"]
    # A session that logged in before the address was disabled.
    early = relay.submission()
    early.login(addr, PASSWORD)

    res = chatmail("disable", "--config", ini, addr)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{addr} disabled: logins, and mail to and from it, are refused\n"
    assert (relay.mailboxes_dir / addr / "DISABLED").exists()
    assert not relay.can_login(addr, PASSWORD)
    with relay.submission() as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(addr, PASSWORD)
    early.mail(addr)
    assert early.rcpt(other) == (
        550,
        f"5.7.1 <{other}>: Recipient address rejected: sending from this address is disabled".encode(),
    )
    early.quit()
    # Mail to it is refused at RCPT, from this relay and from others.
    with relay.port25() as smtp:
        smtp.mail("a@example.net")
        code, msg = smtp.rcpt(addr)
        assert (code, msg) == (550, f"5.2.1 <{addr}>: Recipient address rejected: mailbox disabled".encode())
    with relay.submission() as smtp:
        smtp.login(other, PASSWORD)
        smtp.mail(other)
        assert smtp.rcpt(addr)[0] == 550
    # Nothing of it is gone; enabling gives it back.
    assert relay.password_file(addr).exists()
    res = chatmail("enable", "--config", ini, addr)
    assert res.returncode == 0 and res.stdout == f"{addr} enabled\n", res
    assert relay.can_login(addr, PASSWORD)
    with relay.port25() as smtp:
        smtp.mail("a@example.net")
        assert smtp.rcpt(addr)[0] == 250

    res = chatmail("disable", "--config", ini, f"nobodyxyz@{relay.domain}")
    assert res.returncode == 1
    assert res.stderr == f"chatmail: nobodyxyz@{relay.domain} has no mailbox directory\n"


def test_config_errors_are_one_short_line(tmp_path):
    ini = tmp_path / "chatmail.ini"
    ini.write_text("[params]\nmail_domain = chat.localhost\nmax_load_1m = " + "9" * 100_000_000 + "x\n")
    res = chatmail("expire", "--config", ini)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and len(lines[0]) < 400, res.stderr[:1000]
    assert lines[0].startswith(f"chatmail: config {ini}: max_load_1m = \"999"), lines
    assert lines[0].endswith("... (100000001 bytes): not a number"), lines
