"""The client side of tests/test_systemd.py, run inside a container's network
namespace (`nsenter -t PID -n python systemd_client.py ACTION ARGS...`),
where the relay is 127.0.0.1 on its standard ports. Prints one JSON value.

Actions:
  get URL                      the body of an HTTPS GET (certificate not checked)
  new                          POST https://127.0.0.1/new: fresh credentials
  certs                        the SHA-256 of the certificate each port serves
  setmetadata ADDR PASS TOKEN  registers a push token over IMAP, as Delta Chat does
  cleartext FROM PASS TO       submits a cleartext message on 465: the reply
  login ADDR PASS              SMTP AUTH on 465 with these credentials: code, seconds
  send FROM PASS TO N          submits N encrypted test messages on 465, retrying
                               each until the relay accepts it; prints the tries
"""
import hashlib
import imaplib
import json
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
DOMAIN = "chat.example.org"
MAKE_TEST_MAIL = Path(__file__).resolve().parent.parent / "target/debug/examples/make-test-mail"


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def new():
    req = urllib.request.Request(
        f"https://{HOST}/new", method="POST", headers={"Host": DOMAIN}, data=b""
    )
    with urllib.request.urlopen(req, context=insecure(), timeout=30) as r:
        return json.loads(r.read())


def get(url):
    with urllib.request.urlopen(url, context=insecure(), timeout=30) as r:
        return r.read().decode()


def peer_cert(port, starttls=None):
    with socket.create_connection((HOST, port), timeout=15) as raw:
        if starttls == "smtp":
            f = raw.makefile("rb")
            f.readline()
            raw.sendall(b"EHLO test\r\n")
            while (line := f.readline())[3:4] == b"-":
                pass
            raw.sendall(b"STARTTLS\r\n")
            f.readline()
        with insecure().wrap_socket(raw, server_hostname=DOMAIN) as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def certs():
    return {
        "443": peer_cert(443),
        "465": peer_cert(465),
        "993": peer_cert(993),
        "25": peer_cert(25, "smtp"),
        "587": peer_cert(587, "smtp"),
    }


def setmetadata(addr, password, token):
    imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
    conn = imaplib.IMAP4_SSL(HOST, 993, ssl_context=insecure())
    try:
        conn.login(addr, password)
        typ, data = conn._simple_command(
            "SETMETADATA", '"INBOX"', f'(/private/devicetoken "{token}")'
        )
        return typ
    finally:
        conn.logout()


def smtp(addr, password):
    s = smtplib.SMTP_SSL(HOST, 465, context=insecure(), timeout=60)
    s.login(addr, password)
    return s


def cleartext(addr, password, to):
    msg = (
        f"From: {addr}\r\nTo: {to}\r\nSubject: hi\r\nMessage-ID: <{time.time()}@{DOMAIN}>\r\n"
        "\r\nnot encrypted\r\n"
    ).encode()
    with smtp(addr, password) as s:
        try:
            s.sendmail(addr, [to], msg)
        except smtplib.SMTPDataError as e:
            return [e.smtp_code, e.smtp_error.decode()]
    return [250, ""]


def login(addr, password):
    started = time.monotonic()
    s = smtplib.SMTP_SSL(HOST, 465, context=insecure(), timeout=60)
    try:
        s.login(addr, password)
        code = 235
    except smtplib.SMTPAuthenticationError as e:
        code = e.smtp_code
    except smtplib.SMTPResponseException as e:
        code = e.smtp_code
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass
    return [code, round(time.monotonic() - started, 2)]


def send(addr, password, to, n):
    out = Path(tempfile.mkdtemp(prefix="testmail-"))
    subprocess.run(
        [str(MAKE_TEST_MAIL), "--from", addr, "--to", to, "--out", str(out)],
        capture_output=True,
        check=True,
    )
    [case] = [
        c for c in json.loads((out / "manifest.json").read_text())
        if c["name"] == "encrypted-v4-seipdv1"
    ]
    msg = (out / case["file"]).read_bytes()
    tries = 0
    for i in range(int(n)):
        deadline = time.monotonic() + 120
        while True:
            tries += 1
            try:
                with smtp(addr, password) as s:
                    s.sendmail(addr, [to], msg)
                break
            except (smtplib.SMTPException, OSError):
                # A daemon being restarted: Postfix defers, the client retries.
                assert time.monotonic() < deadline, f"message {i} never accepted"
                time.sleep(0.5)
    return tries


if __name__ == "__main__":
    action, *args = sys.argv[1:]
    print(json.dumps(globals()[action](*args)))
