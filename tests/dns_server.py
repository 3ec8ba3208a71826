"""A real DNS server for the tests: Debian's `unbound`, serving local data on
a loopback high port (no recursion, no validation), and DKIM signing with
a second implementation (dkimpy) for mail the tests hand to port 25."""

import re
import shutil
import socket
import subprocess
import tempfile
import time
from email.utils import getaddresses
from pathlib import Path

import dkim

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def txt_strings(value):
    """A TXT value as zone-file strings of at most 255 bytes."""
    return " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))


class Unbound:
    """`unbound -d` with `zones` ({zone: kind}, e.g. "a.test.": "static")
    and `records` (zone-file lines) as local data."""

    def __init__(self, zones, records, port=None, prefix=(), auth_zones=None):
        self.dir = Path(tempfile.mkdtemp(prefix="unbound-"))
        self.dir.chmod(0o755)
        self.port = port or free_port()
        lines = [
            "server:",
            f"  interface: 127.0.0.1@{self.port}",
            f"  port: {self.port}",
            "  do-ip6: no",
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{self.dir}"',
            f'  pidfile: "{self.dir}/unbound.pid"',
            '  logfile: ""',
            "  use-syslog: no",
            "  verbosity: 1",
            "  access-control: 127.0.0.0/8 allow",
            '  module-config: "iterator"',
            "  cache-max-ttl: 1",
        ]
        for zone, kind in zones.items():
            lines.append(f'  local-zone: "{zone}" {kind}')
        for rec in records:
            lines.append(f"  local-data: '{rec}'")
        # Zone files served authoritatively ({zone: path}).
        for zone, path in (auth_zones or {}).items():
            lines += [
                "auth-zone:",
                f'  name: "{zone}"',
                f'  zonefile: "{path}"',
                "  for-downstream: yes",
                "  for-upstream: no",
                "  fallback-enabled: no",
            ]
        # A command prefix (nsenter into another network namespace): then
        # readiness is read from the log, not probed from here.
        self.prefix = list(prefix)
        self.conf = self.dir / "unbound.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None
        self.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        assert self.proc is None
        self.log = open(self.dir / "unbound.log", "a")
        self.proc = subprocess.Popen(
            [*self.prefix, UNBOUND, "-d", "-c", str(self.conf)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 20
        while True:
            if self.prefix:
                if "start of service" in (self.dir / "unbound.log").read_text():
                    return
                if self.proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(
                        "unbound did not start:\n" + (self.dir / "unbound.log").read_text()
                    )
                time.sleep(0.05)
                continue
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(
                        "unbound did not start:\n" + (self.dir / "unbound.log").read_text()
                    )
                time.sleep(0.05)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None
            self.log.close()


def make_key(directory):
    """A 2048-bit RSA key (PKCS#1 PEM) and its DKIM TXT value."""
    directory = Path(directory)
    pem = directory / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(pem), "2048"],
        check=True,
        capture_output=True,
    )
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(pem), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    import base64

    return pem.read_bytes(), "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def from_domain(raw):
    header = re.search(rb"^From:(.*(?:\r?\n[ \t].*)*)", raw, re.M | re.I)
    if not header:
        return None
    addrs = getaddresses([header.group(1).decode(errors="replace")])
    if len(addrs) != 1 or "@" not in addrs[0][1]:
        return None
    return addrs[0][1].rsplit("@", 1)[1].lower()


def sign(raw, key_pem, selector, domain=None):
    """`raw` with a DKIM-Signature by `domain` (default: the From domain),
    made by dkimpy."""
    domain = domain or from_domain(raw)
    if domain is None:
        return raw
    sig = dkim.sign(
        raw,
        selector.encode(),
        domain.encode(),
        key_pem,
        canonicalize=(b"relaxed", b"relaxed"),
    )
    return sig + raw


def verify(raw, records):
    """dkimpy's verdict on `raw`, looking keys up in `records`
    ({name: txt value}) instead of DNS."""

    def dnsfunc(name, timeout=5):
        return records.get(name.decode().rstrip(".") + ".", "").encode()

    return dkim.verify(raw, dnsfunc=dnsfunc)
