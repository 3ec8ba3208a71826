"""Port 443 for clients behind networks that let only HTTPS out
(docs/web.md): nginx's stream on the sandbox's HTTPS port routes by the
ALPN protocol of the ClientHello, `imap` to Dovecot, `smtp` to Postfix's
submission with implicit TLS, everything else to the HTTPS server block,
which learns the client's address from the PROXY protocol header; and
Delta Chat clients that know only that port chat through it.

Every connection here comes from a random 127.x.y.z address, so the
address nginx logs can only be the client's own.
"""

import imaplib
import json
import random
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    CHATMAIL_BIN,
    PASSWORD,
    encrypted_message,
    start_sandbox,
    stop_sandbox,
)


@pytest.fixture(scope="module")
def relay():
    proc, relay = start_sandbox()
    yield relay
    stop_sandbox(proc, relay)


def random_loopback():
    return "127.%d.%d.%d" % tuple(random.randrange(1, 255) for _ in range(3))


def alpn_context(relay, protocols):
    """The relay's trust anchor (its self-signed certificate, valid for
    127.0.0.1), offering `protocols` by ALPN (none when empty)."""
    ctx = ssl.create_default_context(cafile=relay.info["tls_cert"])
    if protocols:
        ctx.set_alpn_protocols(protocols)
    return ctx


def connect(relay, protocols, source=None):
    """A TLS connection to the HTTPS port, from `source` (random loopback
    address when unset)."""
    raw = socket.create_connection(
        (relay.host, relay.info["https_port"]), 10,
        source_address=(source or random_loopback(), 0),
    )
    return alpn_context(relay, protocols).wrap_socket(raw, server_hostname=relay.host)


class IMAP443(imaplib.IMAP4_SSL):
    """IMAP on the HTTPS port with ALPN `imap`."""

    def __init__(self, relay):
        self.relay = relay
        super().__init__(relay.host, relay.info["https_port"],
                         ssl_context=alpn_context(relay, ["imap"]), timeout=30)

    def _create_socket(self, timeout):
        return connect(self.relay, ["imap"])


def smtp443(relay):
    return smtplib.SMTP_SSL(
        relay.host, relay.info["https_port"], context=alpn_context(relay, ["smtp"]),
        timeout=30, source_address=(random_loopback(), 0),
    )


def http_request(s, method, path, relay):
    s.sendall(
        f"{method} {path} HTTP/1.1\r\nHost: {relay.domain}:{relay.info['https_port']}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while (n := int((parts := rest.split(b"\r\n", 1))[0], 16)) > 0:
            out, rest = out + parts[1][:n], parts[1][n + 2:]
        body = out
    return int(lines[0].split()[1]), headers, body


def test_alpn_imap_reaches_dovecot_and_logs_in(relay):
    with connect(relay, ["imap"]) as s:
        greeting = s.makefile("rb").readline()
    assert greeting.startswith(b"* OK"), greeting

    addr = relay.fresh_addr()
    conn = IMAP443(relay)
    try:
        typ, _ = conn.login(addr, PASSWORD)
        assert typ == "OK"
        assert conn.select("INBOX")[0] == "OK"
    finally:
        conn.logout()
    assert relay.password_file(addr).exists(), "the login created the account"


def test_alpn_smtp_reaches_postfix_submission_and_sends(relay):
    with connect(relay, ["smtp"]) as s:
        greeting = s.makefile("rb").readline()
    assert greeting.startswith(b"220 "), greeting

    addr = relay.fresh_addr()
    conn = IMAP443(relay)
    conn.login(addr, PASSWORD)  # creates the account
    conn.logout()
    with smtp443(relay) as smtp:
        code, _ = smtp.ehlo("client.example")
        assert code == 250 and smtp.has_extn("auth")
        smtp.login(addr, PASSWORD)
        refused = smtp.sendmail(addr, [addr], encrypted_message(addr, addr))
        assert refused == {}

    # The message arrives; read it over port 443 too.
    deadline = time.time() + 20
    while True:
        conn = IMAP443(relay)
        try:
            conn.login(addr, PASSWORD)
            conn.select("INBOX")
            nums = conn.search(None, "ALL")[1][0].split()
            if nums:
                raw = conn.fetch(nums[0], "(RFC822)")[1][0][1]
                break
        finally:
            conn.logout()
        assert time.time() < deadline, "the message did not arrive"
        time.sleep(0.2)
    assert b"-----BEGIN PGP MESSAGE-----" in raw


def test_unauthenticated_smtp_on_443_cannot_send(relay):
    """The stream's connections come from 127.0.0.1: submission still wants
    AUTH from them."""
    with smtp443(relay) as smtp:
        smtp.ehlo("client.example")
        with pytest.raises(smtplib.SMTPException):
            smtp.sendmail("x@example.org", ["y@example.org"], b"Subject: x\r\n\r\nx\r\n")


@pytest.mark.parametrize("protocols", [[], ["http/1.1"], ["h2", "http/1.1"]])
def test_other_clients_get_the_web_front_with_their_own_address(relay, protocols):
    source = random_loopback()
    with connect(relay, protocols, source) as s:
        status, headers, body = http_request(s, "GET", "/", relay)
    assert status == 200
    assert b"<html" in body.lower() and relay.domain.encode() in body

    with connect(relay, protocols, source) as s:
        status, headers, body = http_request(s, "POST", "/new", relay)
    assert (status, headers["content-type"]) == (200, "application/json")
    creds = json.loads(body)
    assert creds["email"].endswith("@" + relay.domain) and creds["password"]
    conn = IMAP443(relay)
    try:
        assert conn.login(creds["email"], creds["password"])[0] == "OK"
    finally:
        conn.logout()

    # nginx saw the client's address (from the PROXY protocol header), not
    # the stream's.
    log = Path(relay.info["log_dir"]) / "nginx-access.log"
    deadline = time.time() + 5
    while not any(l.startswith(source + " ") and '"POST /new ' in l
                  for l in log.read_text().splitlines()):
        assert time.time() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    assert not any(l.startswith("unix:") for l in log.read_text().splitlines())


def setup_etc(tmp_path, stream_module):
    """`chatmail setup --etc` on a copy of this machine's /etc/nginx (with
    or without the stream module enabled), /etc/postfix and /etc/dovecot."""
    etc = tmp_path / "etc"
    for d in ("postfix", "dovecot", "nginx"):
        shutil.copytree(f"/etc/{d}", etc / d, symlinks=True)
    enabled = etc / "nginx/modules-enabled"
    if not stream_module:
        for f in enabled.iterdir():
            f.unlink()
    else:
        assert (enabled / "50-mod-stream.conf").exists(), "apt-get install libnginx-mod-stream"
    out = subprocess.run(
        [str(CHATMAIL_BIN), "setup", "--etc", str(etc), "--domain", "front.example.org"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return etc, out.stdout


def test_setup_puts_the_stream_in_front_when_the_module_is_enabled(tmp_path):
    etc, out = setup_etc(tmp_path, stream_module=True)
    stream = etc / "nginx/modules-enabled/90-chatmail-stream.conf"
    conf = etc / "nginx/conf.d/chatmail.conf"
    assert f"created {stream}" in out and f"created {conf}" in out
    text = stream.read_text()
    assert "listen 443;" in text and "listen [::]:443;" in text
    assert "proxy_pass 127.0.0.1:993;" in text and "proxy_pass 127.0.0.1:465;" in text
    site = conf.read_text()
    assert "listen 127.0.0.1:8443 ssl proxy_protocol;" in site
    assert "listen 443" not in site and "listen [::]:443" not in site

    # Real nginx takes the whole configuration: the module, then the
    # stream at the top level, the server block inside http.
    (tmp_path / "nginx-test.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\n"
        f"include {etc}/nginx/modules-enabled/*.conf;\nevents {{}}\n"
        f"http {{\ninclude /etc/nginx/mime.types;\ninclude {conf};\n}}\n"
    )
    shutil.copy("/etc/nginx/fastcgi_params", tmp_path / "fastcgi_params")
    check = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx-test.conf")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_setup_keeps_443_on_the_server_block_without_the_module(tmp_path):
    etc, out = setup_etc(tmp_path, stream_module=False)
    assert not (etc / "nginx/modules-enabled/90-chatmail-stream.conf").exists()
    site = (etc / "nginx/conf.d/chatmail.conf").read_text()
    assert "listen 443 ssl;" in site and "proxy_protocol" not in site


def test_delta_chat_clients_chat_through_port_443(relay, tmp_path):
    """Delta Chat core itself offers `imap` and `smtp` by ALPN on a port
    that is not 993 or 465: two accounts that only know the HTTPS port
    chat end-to-end encrypted."""
    from test_deltachat import Clients, incoming, new_credentials, secure_join

    clients = Clients(relay, tmp_path / "accounts")
    try:
        accounts = []
        for _ in range(2):
            creds = new_credentials(relay)
            ac = clients.dc.add_account()
            ac.add_or_update_transport({
                "addr": creds["email"], "password": creds["password"],
                "imapServer": relay.host, "imapPort": relay.info["https_port"],
                "imapSecurity": "ssl",
                "smtpServer": relay.host, "smtpPort": relay.info["https_port"],
                "smtpSecurity": "ssl",
                "certificateChecks": "acceptInvalidCertificates",
            })
            assert ac.is_configured()
            ac.bring_online()
            accounts.append(ac)
        a, b = accounts
        chat, _ = secure_join(b, a)
        chat.send_text("hello through port 443")
        snap = incoming(b).get_snapshot()
        assert (snap.text, snap.show_padlock) == ("hello through port 443", True)
    finally:
        clients.close()
