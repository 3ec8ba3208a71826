"""The Debian package as an operator runs it: booted systemd in Debian 12 and
Debian 13 containers (systemd-nspawn, private network), from `apt-get install
./chatmail-helpers_*.deb` to Delta Chat, ACME, restarts, a reboot and purge.

Each release boots once (module-scoped fixture) and the tests below run in
order against it. The root comes from scripts/systemd-root (cached, keyed by
Debian's versions) and is booted through an overlay, so the cache is never
changed. Inside the container everything is Debian's and the package's;
the test tools that are not part of a relay (unbound serving the zone that
`chatmail dns` prints, pebble, the stand-in push gateway, Delta Chat's
`deltachat-rpc-server`) are this machine's binaries run in the container's
network namespace, where the relay is 127.0.0.1.

The sandbox tests are the fast path; this is the slow, true one.
"""
import json
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import CHATMAIL_BIN, REPO
from dns_server import Unbound

DEB = os.environ.get("CHATMAIL_DEB")
DOMAIN = "chat.example.org"
VENV_BIN = REPO / ".venv" / "bin"
CLIENT = Path(__file__).resolve().parent / "systemd_client.py"
PUSH_GATEWAY = CHATMAIL_BIN.parent / "push-gateway"
RELEASES = os.environ.get("CHATMAIL_SYSTEMD_RELEASES", "12 13").split()

pytestmark = pytest.mark.skipif(
    not DEB, reason="CHATMAIL_DEB (the built .deb) is not set; scripts/test sets it"
)


class Machine:
    """One booted container of a cached root, through an overlay."""

    def __init__(self, release):
        self.release = release
        root = subprocess.run(
            [str(REPO / "scripts/systemd-root"), release],
            check=True, capture_output=True, text=True, timeout=1800,
        ).stdout.strip()
        self.dir = Path(tempfile.mkdtemp(prefix=f"chatmail-systemd{release}-"))
        self.merged = self.dir / "merged"
        for d in ("upper", "work", "merged"):
            (self.dir / d).mkdir()
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={root},upperdir={self.dir}/upper,workdir={self.dir}/work",
             str(self.merged)],
            check=True,
        )
        self.name = f"chatmail-t{release}-{os.getpid()}"
        # A cgroup of its own in both hierarchies: with --keep-unit and
        # --register=no nspawn runs the container in the caller's cgroup.
        self.cgroups = [Path("/sys/fs/cgroup/systemd") / self.name,
                        Path("/sys/fs/cgroup/unified") / self.name]
        for cg in self.cgroups:
            cg.mkdir(exist_ok=True)
        # Into the container's own file system: apt refuses a .deb on a
        # bind mount ("Pathname to install is not absolute").
        self.deb = f"/root/{Path(DEB).name}"
        shutil.copy(DEB, self.path(self.deb))
        self.proc = None
        # The CA doctor is told to trust: the self-signed certificate, until
        # the ACME test replaces it.
        self.ca_file = "/etc/ssl/certs/chatmail.pem"
        self.boots = 0
        self.helpers = []

    def boot(self):
        self.boots += 1
        log = open(self.dir / f"boot{self.boots}.log", "w")
        procs = [cg / "cgroup.procs" for cg in self.cgroups]

        def into_cgroups():
            for p in procs:
                p.write_text(str(os.getpid()))

        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-q", "-D", str(self.merged), "-M", self.name, "-b",
             "--register=no", "--keep-unit", "--private-network",
             "--system-call-filter=bpf"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=into_cgroups,
            env=dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1"),
        )
        self.pid = self._leader()
        # systemctl answers once the manager's socket exists.
        deadline = time.time() + 120
        while True:
            r = self.sh("systemctl is-system-running --wait", check=False, timeout=120)
            if r.stdout.strip() in ("running", "degraded"):
                break
            assert time.time() < deadline, f"{r.stdout}{r.stderr}\n{self.boot_log()}"
            time.sleep(0.2)

    def _leader(self, timeout=30):
        """The container's PID 1 (systemd), a child of nspawn."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, self.boot_log()
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                    comm = (stat.parent / "comm").read_text().strip()
                except OSError:
                    continue
                if int(fields[1]) == self.proc.pid and comm == "systemd":
                    return int(stat.parent.name)
            time.sleep(0.1)
        raise AssertionError("the container did not start systemd\n" + self.boot_log())

    def boot_log(self):
        return (self.dir / f"boot{self.boots}.log").read_text(errors="replace")[-4000:]

    def sh(self, command, check=True, timeout=300, env=None):
        """`command` (a shell line) inside the container, as root."""
        assigns = [f"{k}={v}" for k, v in (env or {}).items()]
        r = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", "--", "/usr/bin/env", "-i",
             "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "TERM=dumb",
             *assigns, "/bin/sh", "-c", f"cd /root && {command}"],
            capture_output=True, text=True, timeout=timeout,
        )
        if check:
            assert r.returncode == 0, f"{command}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def in_net(self, *args):
        """A command line of this machine's that runs in the container's
        network namespace."""
        return ["nsenter", "-t", str(self.pid), "-n", "--", *map(str, args)]

    def client(self, *args, timeout=300):
        r = subprocess.run(
            self.in_net(VENV_BIN / "python", CLIENT, *args),
            capture_output=True, text=True, timeout=timeout,
        )
        assert r.returncode == 0, f"client {args[0]}: {r.stdout}\n{r.stderr}"
        return json.loads(r.stdout)

    def helper(self, args, **kw):
        """A long-running helper of this machine's in the container's network."""
        p = subprocess.Popen(self.in_net(*args), **kw)
        self.helpers.append(p)
        return p

    def path(self, p):
        """A file of the container, as this machine sees it."""
        return self.merged / str(p).lstrip("/")

    def failed_units(self):
        return self.sh("systemctl --failed --plain --no-legend").stdout.strip()

    def journal(self, unit_glob="chatmail-*"):
        return self.sh(f"journalctl --no-pager -o cat -u '{unit_glob}'").stdout

    def shutdown(self, reboot=False):
        """Shuts the container down (or reboots it and waits for the boot)."""
        if reboot:
            self.sh("systemctl reboot", check=False)
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if reboot:
            # nspawn's exit code for "the container asked for a reboot".
            assert code == 133, f"nspawn exited {code}\n{self.boot_log()}"
            self.boot()

    def remove(self):
        for p in self.helpers:
            p.kill()
            p.wait()
        if self.proc and self.proc.poll() is None:
            self.shutdown()
        subprocess.run(["umount", "-l", str(self.merged)], check=False)
        # nspawn and the container's systemd made cgroups below ours:
        # removed deepest first, once their processes are gone.
        for cg in self.cgroups:
            for d in sorted((p for p in cg.rglob("*") if p.is_dir()), reverse=True) + [cg]:
                try:
                    d.rmdir()
                except OSError:
                    pass
        if not os.environ.get("CHATMAIL_KEEP_SANDBOX"):
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module", params=RELEASES)
def machine(request):
    m = Machine(request.param)
    try:
        m.boot()
        yield m
    finally:
        m.remove()


def deliveries(m, addr):
    """The messages in `addr`'s INBOX (new and cur)."""
    box = m.path(f"/home/vmail/mail/{DOMAIN}/{addr}")
    return [f for d in ("new", "cur") if (box / d).is_dir() for f in (box / d).iterdir()]


def wait_for(what, cond, timeout=60):
    deadline = time.time() + timeout
    while not (result := cond()):
        assert time.time() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)
    return result


# --- install, setup, doctor ---------------------------------------------


def test_install_the_deb_offline(machine):
    r = machine.sh(
        # Offline: the private network reaches nothing; every package is in
        # the root's apt cache. unsafe-io: dpkg without an fsync per file.
        "DEBIAN_FRONTEND=noninteractive apt-get install -y "
        f"-o Dpkg::Options::=--force-unsafe-io {machine.deb}",
        timeout=600,
    )
    assert "chatmail setup --domain YOUR.DOMAIN" in r.stdout
    assert machine.sh("chatmail --version").stdout.startswith("chatmail ")
    # The socket directory inside Postfix's chroot (tmpfiles.d), before
    # any unit starts.
    st = machine.sh("stat -c '%U:%G %a' /var/spool/postfix/chatmail").stdout.split()
    assert st == ["vmail:postfix", "750"]


def test_setup_converges_the_first_time(machine):
    r = machine.sh(f"chatmail setup --domain {DOMAIN}", check=False, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "setup is incomplete" not in r.stdout
    assert machine.failed_units() == ""
    for unit in ("chatmail-auth", "chatmail-lastlogin", "chatmail-metadata",
                 "chatmail-milter", "chatmail-policy", "dovecot", "postfix", "nginx"):
        assert machine.sh(f"systemctl is-active {unit}", check=False).stdout.strip() == "active", unit
    # A second run changes nothing, restarts nothing, and is still complete.
    r = machine.sh(f"chatmail setup --domain {DOMAIN}", timeout=600)
    assert "configuration unchanged" in r.stdout
    assert "restart" not in r.stdout, r.stdout


def test_setup_finishes_what_a_failed_run_left(machine):
    """A service that runs with an older configuration is restarted by the
    next run, although that run writes no file."""
    applied = "/var/lib/chatmail-helpers/applied/dovecot.service"
    machine.sh(f"echo stale > {applied}")
    r = machine.sh(f"chatmail setup --domain {DOMAIN}", timeout=600)
    assert "configuration unchanged" in r.stdout
    assert "running systemctl restart dovecot.service" in r.stdout, r.stdout
    assert machine.sh(f"cat {applied}").stdout.strip() != "stale"


def test_mailboxes_dir_elsewhere_is_writable(machine):
    """The units may write wherever chatmail.ini's mailboxes_dir is."""
    dropin = machine.sh(
        "systemctl cat chatmail-auth.service").stdout
    assert f"ReadWritePaths=-/home/vmail/mail/{DOMAIN}" in dropin


def test_doctor_is_all_ok_and_quiet(machine):
    # The self-signed certificate is trusted only when named.
    r = machine.sh("chatmail doctor --ca-file /etc/ssl/certs/chatmail.pem", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""
    r = machine.sh("chatmail doctor", check=False)
    assert r.returncode != 0, r.stdout
    assert "web home" in r.stdout and r.stderr == ""


# --- Delta Chat, refusals, push, the journal ------------------------------


@pytest.fixture(scope="module")
def push_gateway(machine):
    d = machine.dir / "push"
    d.mkdir()
    url, log = d / "url", d / "requests.jsonl"
    log.touch()
    p = machine.helper([PUSH_GATEWAY, url, log])
    wait_for("push gateway", url.exists, 30)
    machine.sh(
        "printf 'push_notification_url = %s\\npush_notification_h2c = true\\n' "
        f"'{url.read_text()}' >> /etc/chatmail/chatmail.ini"
    )
    # chatmail.ini changed: setup restarts exactly the daemons.
    r = machine.sh(f"chatmail setup --domain {DOMAIN}", timeout=600)
    assert "running systemctl restart chatmail-metadata.service" in r.stdout, r.stdout
    assert "restart dovecot" not in r.stdout and "restart postfix" not in r.stdout, r.stdout
    yield log
    p.kill()


@pytest.fixture(scope="module")
def rpc(machine):
    """Delta Chat's rpc server in the container's network namespace."""
    from deltachat_rpc_client import DeltaChat, Rpc

    bindir = machine.dir / "bin"
    bindir.mkdir()
    wrapper = bindir / "deltachat-rpc-server"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec nsenter -t {machine.pid} -n -- {VENV_BIN}/deltachat-rpc-server \"$@\"\n"
    )
    wrapper.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    r = Rpc(accounts_dir=str(machine.dir / "accounts"), env=env)
    r.start()
    yield DeltaChat(r)
    r.close()


def account(machine, dc):
    creds = machine.client("new")
    assert creds["email"].endswith("@" + DOMAIN)
    ac = dc.add_account()
    ac.add_or_update_transport({
        "addr": creds["email"], "password": creds["password"],
        "imapServer": "127.0.0.1", "imapPort": 993, "imapSecurity": "ssl",
        "smtpServer": "127.0.0.1", "smtpPort": 465, "smtpSecurity": "ssl",
        "certificateChecks": "acceptInvalidCertificates",
    })
    ac.bring_online()
    return ac, creds


def test_delta_chat_secure_join_messages_and_push(machine, push_gateway, rpc):
    from test_deltachat import incoming, secure_join

    a, a_creds = account(machine, rpc)
    b, b_creds = account(machine, rpc)
    chat, _ = secure_join(a, b)
    chat.send_text("hello from b")
    assert incoming(a).get_snapshot().text == "hello from b"

    token = "openpgp:" + "A" * 40
    assert machine.client("setmetadata", a_creds["email"], a_creds["password"], token) == "OK"
    chat.send_text("wake up")
    assert incoming(a).get_snapshot().text == "wake up"
    pushes = wait_for(
        "push", lambda: [json.loads(l) for l in push_gateway.read_text().splitlines()
                         if json.loads(l)["token"] == token], 30)
    assert pushes[0]["status"] == 200

    # Cleartext between the two is refused with chatmail's text.
    code, text = machine.client("cleartext", b_creds["email"], b_creds["password"],
                                a_creds["email"])
    assert (code, text) == (523, "5.7.1 Encryption Needed: Invalid Unencrypted Mail")

    # One journal line per decision, as an operator reads them.
    journal = machine.journal().splitlines()

    def line(*words):
        found = [l for l in journal if all(w in l for w in words)]
        assert found, f"no journal line with {words}:\n" + "\n".join(journal[-40:])
        return found

    line("account created", a_creds["email"])
    line("account created", b_creds["email"])
    line("rejected: 523 5.7.1 Encryption Needed", b_creds["email"])
    line("accepted: ", b_creds["email"])
    line("push notification delivered", a_creds["email"])
    assert not [l for l in journal if "state=Some(" in l]
    for creds in (a_creds, b_creds):
        assert not [l for l in journal if creds["password"] in l]


def test_a_wrong_password_gets_535_quickly(machine):
    code, seconds = machine.client("login", f"nobody@{DOMAIN}", "wrong-password-123456")
    assert code == 535 and seconds < 5, (code, seconds)


def test_no_password_in_the_journal_while_auth_is_down(machine):
    """With chatmail-auth stopped, a login fails and the tried password
    reaches neither the journal, of any unit (Dovecot's and Postfix's
    included), nor a file under /var/log: on Debian 12's Dovecot 2.3 as on
    13's 2.4 the Lua passdb never puts it into a message."""
    addr = "".join(random.choice(string.ascii_lowercase) for _ in range(9)) + f"@{DOMAIN}"
    password = "down-" + os.urandom(8).hex()
    since = machine.sh("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    machine.sh("systemctl stop chatmail-auth.service")
    try:
        code, _ = machine.client("login", addr, password)
        # Dovecot answers a temporary failure (IMAP: [UNAVAILABLE]), which
        # Postfix reports as "535 5.7.8 ... (reason unavailable)".
        assert code == 535, code
        # Dovecot logged the failure of the passdb (the daemon is down).
        deadline = time.time() + 10
        while "passdb-lua" not in machine.sh(
            f"journalctl --no-pager -o cat --since '{since}' -u dovecot.service"
        ).stdout:
            assert time.time() < deadline, "no passdb-lua error in the journal"
            time.sleep(0.2)
        journal = machine.sh("journalctl --no-pager -o cat").stdout
        assert password not in journal
        files = machine.sh(f"grep -rlF -- '{password}' /var/log", check=False)
        assert files.returncode == 1 and not files.stdout, files.stdout
    finally:
        machine.sh("systemctl start chatmail-auth.service")
    assert machine.failed_units() == ""


def test_expire_and_report_run(machine):
    machine.sh("systemctl start chatmail-expire.service chatmail-report.service")
    # Without node-exporter the report has nobody to write for: skipped.
    assert not machine.path("/var/lib/prometheus/node-exporter/chatmail.prom").exists()
    # With node-exporter's directory as Debian ships it (root, 0755).
    machine.sh("install -d -m 0755 /var/lib/prometheus/node-exporter "
               "&& systemctl start chatmail-report.service")
    prom = machine.sh("cat /var/lib/prometheus/node-exporter/chatmail.prom").stdout
    assert "chatmail_" in prom
    mode = machine.sh("stat -c %a /var/lib/prometheus/node-exporter/chatmail.prom").stdout
    assert mode.strip() == "644"
    assert machine.failed_units() == ""


# --- ACME through the printed zone ----------------------------------------


def test_acme_with_the_printed_zone_and_renewal(machine):
    zone = machine.sh("chatmail dns --ipv4 127.0.0.1").stdout
    # Served as an authoritative zone, as a DNS host would, so that the
    # CNAMEs (mta-sts., www.) are answered with their targets.
    zonefile = machine.dir / "zone"
    zonefile.write_text(
        f"{DOMAIN}. 3600 IN SOA ns.{DOMAIN}. hostmaster.{DOMAIN}. 1 3600 600 86400 60\n"
        f"{DOMAIN}. 3600 IN NS ns.{DOMAIN}.\nns.{DOMAIN}. 3600 IN A 127.0.0.1\n" + zone
    )
    zonefile.chmod(0o644)
    dns = Unbound({}, [], port=53, prefix=machine.in_net(), auth_zones={f"{DOMAIN}.": zonefile})
    machine.helpers.append(dns.proc)
    d = machine.dir / "pebble"
    d.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=pebble", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", d / "tls.key", "-out", d / "tls.pem"],
        check=True, capture_output=True,
    )
    (d / "config.json").write_text(json.dumps({"pebble": {
        "listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
        "certificate": str(d / "tls.pem"), "privateKey": str(d / "tls.key"),
        "httpPort": 80, "tlsPort": 5001, "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }}))
    machine.helper(["env", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "pebble",
                    "-config", d / "config.json", "-dnsserver", "127.0.0.1:53"],
                   stdout=open(d / "log", "w"), stderr=subprocess.STDOUT)
    shutil.copy(d / "tls.pem", machine.path("/root/pebble.pem"))
    env = {"REQUESTS_CA_BUNDLE": "/root/pebble.pem"}
    wait_for("pebble", lambda: _port_open(machine, 14000), 30)
    before = machine.client("certs")
    r = machine.sh(f"chatmail setup --domain {DOMAIN} --acme "
                   "--acme-server https://127.0.0.1:14000/dir", env=env, check=False, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr + (d / "log").read_text()[-3000:]
    def served_everywhere_but(old):
        """The certificate every port serves, once they agree on one that
        is not `old`."""
        c = machine.client("certs")
        return c if len(set(c.values())) == 1 and c["443"] != old["443"] else None

    issued = wait_for("the new certificate on every port", lambda: served_everywhere_but(before))
    r = machine.sh("certbot renew --force-renewal --no-random-sleep-on-renew",
                   env=env, check=False, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for("the renewed certificate on every port", lambda: served_everywhere_but(issued))
    assert machine.failed_units() == ""
    # From now on doctor trusts pebble's root, as a client of this CA would.
    (machine.path("/root/pebble-root.pem")).write_text(
        machine.client("get", "https://127.0.0.1:15000/roots/0"))
    machine.ca_file = "/root/pebble-root.pem"
    r = machine.sh(f"chatmail doctor --ca-file {machine.ca_file}", check=False)
    assert r.returncode == 0 and r.stderr == "", r.stdout + r.stderr


def _port_open(machine, port):
    r = subprocess.run(
        machine.in_net(sys.executable, "-c",
                       f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"),
        capture_output=True,
    )
    return r.returncode == 0


# --- restarts, reboot, purge --------------------------------------------


def test_restarts_under_load_and_a_reboot_lose_nothing(machine):
    a = machine.client("new")
    b = machine.client("new")
    # Log both in once, so that the accounts exist.
    for c in (a, b):
        assert machine.client("login", c["email"], c["password"])[0] == 235
    sender = subprocess.Popen(
        machine.in_net(VENV_BIN / "python", CLIENT, "send", a["email"], a["password"],
                       b["email"], 30),
        stdout=subprocess.PIPE, text=True,
    )
    for daemon in ("auth", "lastlogin", "metadata", "milter", "policy"):
        time.sleep(0.5)
        machine.sh(f"systemctl restart chatmail-{daemon}")
    assert sender.wait(timeout=300) == 0
    wait_for("30 messages", lambda: len(deliveries(machine, b["email"])) >= 30, 120)

    # Mail queued when the reboot comes is delivered after it: held back
    # from Dovecot by Postfix's defer_transports (Dovecot itself must run,
    # it authenticates the submission), which is gone again after the boot.
    machine.sh("postconf -e defer_transports=lmtp && postfix reload")
    assert machine.client("send", a["email"], a["password"], b["email"], 1) >= 1
    wait_for("a queued message", lambda: machine.sh("postqueue -j").stdout.strip())
    machine.sh("postconf -X defer_transports")
    assert len(deliveries(machine, b["email"])) == 30
    machine.shutdown(reboot=True)
    machine.sh("postqueue -f")
    wait_for("the queued message", lambda: len(deliveries(machine, b["email"])) >= 31, 120)
    assert machine.failed_units() == ""
    r = machine.sh(f"chatmail doctor --ca-file {machine.ca_file}", check=False)
    assert r.returncode == 0 and r.stderr == "", r.stdout + r.stderr


def test_purge_removes_what_the_package_owns(machine):
    r = machine.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y chatmail-helpers",
                   timeout=300)
    assert "kept the mailboxes in /home/vmail" in r.stdout
    for gone in ("/usr/bin/chatmail", "/var/lib/chatmail-helpers", "/var/spool/postfix/chatmail",
                 "/etc/systemd/system/chatmail-auth.service.d",
                 "/usr/lib/tmpfiles.d/chatmail-helpers.conf"):
        assert not machine.path(gone).exists(), gone
    assert not list(machine.path("/lib/systemd/system").glob("chatmail-*"))
    assert not list(machine.path("/usr/lib/systemd/system").glob("chatmail-*"))
    assert machine.path("/home/vmail/mail").is_dir()
