"""`chatmail setup --etc` on a copy of this machine's stock Debian
/etc/postfix and /etc/dovecot, then real Postfix and Dovecot started from
that copy, with our daemons as the shipped systemd units run them.

Only a test overlay is added to run the instance privately next to anything
else on the machine: 127.0.0.1 high ports, a private queue, data, state and
run directory, and the absolute socket paths of setup's output (/run/...,
/var/spool/postfix/private/...) moved into the test directory. Postfix gets it
through `postconf -e/-M/-F` (checked to change nothing else), Dovecot through
its own `local.conf` (Debian's dovecot.conf includes it last). The files
setup wrote are checked byte for byte before the overlay is added.
"""

import grp
import hashlib
import imaplib
import os
import pwd
import random
import re
import shutil
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from conftest import CHATMAIL_BIN, REPO, make_test_mail

DOMAIN = "setup.localhost"
DAEMONS = ["auth", "lastlogin", "metadata", "milter", "policy"]
# The master.cf services that listen on the network, renamed to loopback ports.
INET_SERVICES = ["smtp", "submission", "submissions"]
TIMEOUT = 60


def run(*args, timeout=120, check=True):
    """Runs a command to completion; its output must not be a pipe a
    daemonizing child could keep open, so it goes through a temp file."""
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.run(
            [str(a) for a in args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
        out.seek(0)
        text = out.read()
    if check:
        assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{text}"
    return proc.returncode, text


def output(*args):
    return run(*args)[1]


def snapshot(top):
    """Every file, symlink and directory under `top`: contents (sha256) or
    link target, mode, owner and group."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                what = "-> " + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                what = "dir"
            out[str(path.relative_to(top))] = (what, oct(st.st_mode), st.st_uid, st.st_gid)
    return out


def abs_paths(text):
    """Absolute paths in the settings of config text (comments skipped):
    after a blank, '=', ':', '<' or ','."""
    settings = "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    )
    return set(re.findall(r"(?:^|(?<=[\s=:<,]))(/[^\s,:;\"'()}]+)", settings, re.M))


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(what, ready, timeout=TIMEOUT, logs=lambda: ""):
    deadline = time.time() + timeout
    while not ready():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{logs()}", pytrace=False)
        time.sleep(0.1)


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def ensure_vmail():
    """The vmail user the package's postinst (and the sandbox) creates."""
    try:
        pwd.getpwnam("vmail")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/home/vmail", "--shell", "/usr/sbin/nologin", "vmail"],
            check=False,
        )
    return pwd.getpwnam("vmail")


def unit(daemon):
    """User, Group and --listen path of a shipped systemd unit."""
    text = (REPO / "systemd" / f"chatmail-{daemon}.service").read_text()
    fields = dict(re.findall(r"^(User|Group|ExecStart)=(.*)$", text, re.M))
    listen = re.search(r"--listen unix:(\S+)", fields["ExecStart"]).group(1)
    return fields["User"], fields["Group"], listen


class SetupTree:
    """A copy of the stock /etc/postfix and /etc/dovecot of `root` (this
    machine's by default) with `chatmail setup` applied twice (and once more
    with --dry-run). `owners`: whether the certificate directories keep the
    owner and group ids they have in `root`."""

    def __init__(self, top, root=Path("/"), owners=True):
        self.top = top
        self.etc = top / "etc"
        self.etc.mkdir()
        for d in ["postfix", "dovecot"]:
            src = root / "etc" / d
            assert src.is_dir(), f"{src} missing: run scripts/install-deps"
            run("cp", "-a", src, self.etc)
        # The certificate directories every Debian machine has, as they are
        # in the root (setup makes its self-signed certificate in them).
        for d in ["ssl", "ssl/certs", "ssl/private"]:
            src, dst = root / "etc" / d, self.etc / d
            dst.mkdir()
            if src.is_dir():
                st = src.stat()
                if owners:
                    os.chown(dst, st.st_uid, st.st_gid)
                dst.chmod(stat.S_IMODE(st.st_mode))
        self.stock_paths = set()
        for f in self.etc.rglob("*"):
            if f.is_file() and not f.is_symlink() and f.suffix in (".cf", ".conf", ".ext"):
                self.stock_paths |= abs_paths(f.read_text(errors="replace"))

        self.first = self.setup()
        self.after_first = snapshot(self.etc)
        self.second = self.setup()
        self.after_second = snapshot(self.etc)
        self.dry_run = self.setup("--dry-run")
        self.after_dry_run = snapshot(self.etc)

    def setup(self, *extra):
        code, out = run(CHATMAIL_BIN, "setup", "--domain", DOMAIN, "--etc", self.etc,
                        *extra, check=False)
        assert code == 0, f"chatmail setup {' '.join(extra)} failed:\n{out}"
        return out


class PrivateRelay:
    """Postfix and Dovecot started from a SetupTree plus the test overlay,
    and our daemons, all private to one test directory."""

    # The Dovecot instance's name, with a random suffix.
    INSTANCE = "chatmail-setup-test"

    def __init__(self, tree):
        self.tree = tree
        self.top = tree.top
        self.etc = tree.etc
        self.postfix_dir = self.etc / "postfix"
        self.dovecot_conf = self.etc / "dovecot/dovecot.conf"
        self.queue = self.top / "spool/postfix"
        self.run_dir = self.top / "run"
        self.log_dir = self.top / "log"
        self.mailboxes_dir = self.top / "mail" / DOMAIN
        self.cert = self.etc / "ssl/certs/chatmail.pem"
        self.children = {}
        self.postfix_started = False
        self.dovecot_started = False
        # What runs Postfix's and Dovecot's programs: nothing, this machine's.
        self.wrapper = []
        ports = free_ports(5)
        self.ports = dict(zip(["smtp", "submission", "submissions", "imap", "imaps"], ports))

    def private(self, path):
        """Where an absolute socket path of setup's output goes."""
        for prefix, to in [("/var/spool/postfix/", self.queue), ("/run/", self.run_dir)]:
            if path.startswith(prefix):
                return str(to / path[len(prefix):])
        pytest.fail(f"the test overlay has no private place for {path}", pytrace=False)

    def logs(self):
        out = []
        for f in sorted(self.log_dir.glob("*.log")):
            lines = f.read_text(errors="replace").splitlines()[-15:]
            out.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def cmd(self, program, *args):
        """A command line of Postfix's or Dovecot's `program`."""
        return [*self.wrapper, program, *args]

    # -- starting ---------------------------------------------------------

    def start(self):
        self.prepare()
        self.postfix_before = self.postfix_config()
        self.postfix_overlay()
        self.postfix_after = self.postfix_config()
        self.dovecot_overlay()

        for daemon in DAEMONS:
            self.start_daemon(daemon)
        self.dovecot_started = True
        run(*self.cmd("dovecot", "-c", self.dovecot_conf))
        self.postfix_started = True
        run(*self.cmd("postfix", "-c", self.postfix_dir, "start"))
        for name, port in self.ports.items():
            wait_for(f"{name} on port {port}", lambda: port_open(port), logs=self.logs)

    def prepare(self):
        """The test directory's run, log, queue and mail directories, the
        binary and chatmail.ini."""
        vmail = ensure_vmail()
        for d in [self.run_dir, self.log_dir, self.queue, self.top / "lib/dovecot"]:
            d.mkdir(parents=True, exist_ok=True)
        self.top.chmod(0o755)
        for d in [self.mailboxes_dir.parent, self.mailboxes_dir]:
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, vmail.pw_uid, vmail.pw_gid)
        # Dovecot puts its LMTP and SASL sockets into Postfix's private/
        # directory and starts first, so create it the way Postfix would.
        private = self.queue / "private"
        private.mkdir()
        os.chown(private, pwd.getpwnam("postfix").pw_uid, 0)
        private.chmod(0o700)
        # Our daemons (vmail) must reach the binary and their config.
        self.exe = self.top / "bin/chatmail"
        self.exe.parent.mkdir()
        shutil.copy(CHATMAIL_BIN, self.exe)
        self.exe.chmod(0o755)
        self.ini = self.run_dir / "chatmail.ini"
        self.write_ini()

    def write_ini(self):
        """setup's chatmail.ini with the mailboxes in the test directory."""
        overrides = {
            "mailboxes_dir": str(self.mailboxes_dir),
            "nocreate_file": str(self.top / "chatmail-nocreate"),
            # A test machine is busy: account creation must not refuse for load.
            "max_load_1m": "1000",
            # The DKIM key setup created in the tree.
            "dkim_key_file": str(self.etc / "dkimkeys/opendkim.private"),
        }
        lines = [
            line
            for line in (self.etc / "chatmail/chatmail.ini").read_text().splitlines()
            if line.split("=")[0].strip() not in overrides
        ]
        lines += [f"{k} = {v}" for k, v in overrides.items()]
        self.ini.write_text("\n".join(lines) + "\n")

    def postfix_config(self):
        postconf = self.cmd("postconf", "-c", self.postfix_dir)
        main = dict(
            line.split(" = ", 1) if " = " in line else (line.rstrip(" ="), "")
            for line in output(*postconf, "-n").splitlines()
        )
        master = {}
        for line in output(*postconf, "-M").splitlines():
            fields = line.split()
            master[(fields[0], fields[1])] = fields[2:]
        return main, master

    def postfix_main(self):
        """The main.cf settings of the overlay."""
        return {
            "queue_directory": str(self.queue),
            "data_directory": str(self.top / "lib/postfix"),
            # No syslog here: Postfix logs to a file.
            "maillog_file": str(self.log_dir / "postfix.log"),
            "maillog_file_prefixes": str(self.top),
        }

    def postfix_overlay(self):
        pc = self.cmd("postconf", "-c", self.postfix_dir)
        self.main_overlay = self.postfix_main()
        run(*pc, "-e", *(f"{k}={v}" for k, v in self.main_overlay.items()))
        for service in INET_SERVICES:
            line = output(*pc, "-M", f"{service}/inet").strip()
            assert line, f"setup left no {service}/inet service in master.cf"
            rest = line.split(None, 1)[1]
            name = f"127.0.0.1:{self.ports[service]}"
            run(*pc, "-M", f"{name}/inet={name} {rest}")
            run(*pc, "-M#", f"{service}/inet")
        # A private queue directory has no chroot jail set up.
        run(*pc, "-F", "*/*/chroot=n")

    def dovecot_instance(self, *settings):
        """The first lines of the Dovecot overlay: a private instance on
        loopback ports (`settings` go first)."""
        assert re.search(r"^!include_try local\.conf$", self.dovecot_conf.read_text(), re.M)
        return [
            "# Test overlay: a private instance on loopback ports.",
            *settings,
            f"state_dir = {self.top}/lib/dovecot",
            f"instance_name = {self.INSTANCE}-{uuid.uuid4().hex[:8]}",
            f"log_path = {self.log_dir}/dovecot.log",
            "listen = 127.0.0.1",
            "service imap-login {",
            f"  inet_listener imap {{\n    port = {self.ports['imap']}\n  }}",
            f"  inet_listener imaps {{\n    port = {self.ports['imaps']}\n  }}",
            "}",
        ]

    def dovecot_overlay(self):
        """Debian's dovecot.conf ends with `!include_try local.conf`: the
        overlay goes there, so every file setup wrote is read as written."""
        parts = self.dovecot_instance(f"base_dir = {self.run_dir}/dovecot")
        settings = dict(
            line.split("=", 1)
            for line in output(
                *self.cmd("doveconf", "-c", self.dovecot_conf, "-S")
            ).splitlines()
            if "=" in line
        )
        # Unix listeners outside base_dir (in Postfix's queue directory).
        self.listeners = []
        for key, path in settings.items():
            m = re.fullmatch(r"service/([^/]+)/unix_listener/(.+)/path", key)
            if m and path.startswith("/"):
                self.listeners.append(path)
                parts.append(
                    f"service {m.group(1)} {{\n  unix_listener {path} {{\n"
                    f"    path = {self.private(path)}\n  }}\n}}"
                )
        # Our dict daemons' sockets.
        self.dicts = {}
        for key, value in settings.items():
            m = re.fullmatch(r"proxy:(/[^:]+):(\w+)", value)
            if not m:
                continue
            uri = f"proxy:{self.private(m.group(1))}:{m.group(2)}"
            self.dicts[key] = value
            if "/" not in key:
                parts.append(f"{key} = {uri}")
            elif key.startswith("plugin/"):
                parts.append(f"plugin {{\n  {key[len('plugin/'):]} = {uri}\n}}")
            else:
                pytest.fail(f"the test overlay cannot move {key}", pytrace=False)
        # The Lua passdb/userdb of Dovecot 2.3 names the auth socket in its
        # script; the auth processes run a copy with the socket moved.
        args = []
        for key, value in settings.items():
            m = re.fullmatch(r"(passdb|userdb)/(\d+)/args", key)
            if m and settings[f"{m.group(1)}/{m.group(2)}/driver"] == "lua":
                script = re.fullmatch(r"file=(\S+) blocking=yes", value).group(1)
                assert script.startswith(f"{self.etc}/"), f"{key} = {value}: not in the tree"
                lua = Path(script).read_text()
                copy = self.run_dir / f"{m.group(1)}-{m.group(2)}.lua"
                copy.write_text(re.sub(
                    r'^(local socket_path = ")(/[^"]+)',
                    lambda u: u.group(1) + self.private(u.group(2)),
                    lua, flags=re.M,
                ))
                copy.chmod(0o644)
                # (blocking=yes is the default: an executable line takes no
                # argument with a blank in it.)
                args += ["-o", f"{key}=file={copy}"]
        assert args, "setup configured no Lua passdb/userdb"
        for service in ["auth", "auth-worker"]:
            executable = settings[f"service/{service}/executable"]
            parts.append(
                f"service {service} {{\n  executable = {executable} {' '.join(args)}\n}}"
            )
        (self.etc / "dovecot/local.conf").write_text("\n".join(parts) + "\n")

    def start_daemon(self, daemon):
        user, group, listen = unit(daemon)
        socket_path = Path(self.private(listen))
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        os.chown(socket_path.parent, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
        socket_path.parent.chmod(0o750)
        log = open(self.log_dir / f"{daemon}.log", "ab")
        proc = subprocess.Popen(
            [self.exe, daemon, "--config", self.ini, "--listen", f"unix:{socket_path}"],
            user=user, group=group, extra_groups=[],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        )
        log.close()
        self.children[daemon] = proc

        def up():
            assert proc.poll() is None, f"chatmail {daemon} exited\n{self.logs()}"
            return socket_path.exists()

        wait_for(f"chatmail {daemon} on {socket_path}", up, logs=self.logs)

    # -- stopping ---------------------------------------------------------

    def stop(self):
        if self.postfix_started and (self.queue / "pid/master.pid").exists():
            run(*self.cmd("postfix", "-c", self.postfix_dir, "stop"), check=False)
        pid_file = self.run_dir / "dovecot/master.pid"
        if self.dovecot_started and pid_file.exists():
            pid = int(pid_file.read_text().strip())
            try:
                os.kill(pid, signal.SIGTERM)
                deadline = time.time() + 15
                while time.time() < deadline:
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.children.values():
            proc.terminate()
        for proc in self.children.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- clients ----------------------------------------------------------

    def tls(self):
        """Trusts exactly setup's self-signed certificate, for its domain."""
        return ssl.create_default_context(cafile=self.cert)

    def imap(self):
        return _IMAPS(self)

    def login(self, addr, password):
        conn = self.imap()
        try:
            conn.login(addr, password)
        except Exception:
            conn.shutdown()
            raise
        return conn

    def submission(self):
        smtp = _SMTP(self.ports["submission"])
        smtp.starttls(context=self.tls())
        return smtp


class _IMAPS(imaplib.IMAP4_SSL):
    """IMAPS to the relay's port, verified against setup's certificate for
    the relay's domain, from a random 127.x.y.z address (Dovecot delays
    further logins from an address after a failed one)."""

    def __init__(self, relay):
        self.relay = relay
        super().__init__(DOMAIN, relay.ports["imaps"], ssl_context=relay.tls(), timeout=30)

    def _create_socket(self, timeout):
        source = "127.%d.%d.%d" % tuple(random.randrange(1, 255) for _ in range(3))
        sock = socket.create_connection(
            ("127.0.0.1", self.port), timeout, source_address=(source, 0)
        )
        return self.ssl_context.wrap_socket(sock, server_hostname=DOMAIN)


class _SMTP(smtplib.SMTP):
    """SMTP to a loopback port under the relay's name, so STARTTLS checks
    the certificate for the domain."""

    def __init__(self, port):
        self._loopback_port = port
        super().__init__(DOMAIN, port, timeout=30)

    def _get_socket(self, host, port, timeout):
        return socket.create_connection(("127.0.0.1", self._loopback_port), timeout)


def tree_in_tmp(prefix, **tree_args):
    """A SetupTree in a new directory under /tmp, removed after use (a
    fixture's body)."""
    assert CHATMAIL_BIN.exists(), f"{CHATMAIL_BIN} not built (cargo build)"
    # Not pytest's tmp_path: its 0700 parents would lock out the vmail user.
    top = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    top.chmod(0o755)
    try:
        yield SetupTree(top, **tree_args)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def started(relay):
    """`relay` running, stopped after use (a fixture's body)."""
    try:
        relay.start()
        yield relay
    finally:
        relay.stop()


@pytest.fixture(scope="module")
def setup_tree():
    yield from tree_in_tmp("chatmail-setup-")


@pytest.fixture(scope="module")
def relay(setup_tree):
    yield from started(PrivateRelay(setup_tree))


def fresh_addr():
    return uuid.uuid4().hex[:9] + "@" + DOMAIN


def fresh_password():
    return uuid.uuid4().hex


def test_setup_applies_everything_on_the_first_run(setup_tree):
    out, etc = setup_tree.first, setup_tree.etc
    for f in [
        "chatmail/chatmail.ini",
        "postfix/chatmail-login-map",
        "postfix/chatmail-submission-header-cleanup",
        "dovecot/conf.d/90-chatmail.conf",
        "dovecot/chatmail-auth.lua",
        "dovecot/chatmail-push.lua",
    ]:
        assert f"created {etc / f}\n" in out, out
    for f in ["postfix/master.cf", "dovecot/conf.d/10-auth.conf"]:
        assert f"updated {etc / f}\n" in out, out
    assert "created a self-signed certificate" in out, out
    key = etc / "dkimkeys/opendkim.private"
    assert f"created DKIM key {key} (publish its record: chatmail dns)\n" in out, out
    assert key.stat().st_mode & 0o777 == 0o640
    assert key.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert (etc / "postfix/main.cf").is_file()
    assert "configuration unchanged" not in out


def test_the_self_signed_certificate_is_a_server_certificate_for_every_name(setup_tree):
    """Not a CA (webpki refuses a CA certificate as a server's, even as its
    own trust anchor), and valid for each name nginx serves and `--acme`
    would ask for: given as the only trust anchor, it verifies on each."""
    cert = str(setup_tree.etc / "ssl/certs/chatmail.pem")
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext",
         "subjectAltName,basicConstraints,keyUsage,extendedKeyUsage", "-in", cert],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    names = [DOMAIN, f"mta-sts.{DOMAIN}", f"www.{DOMAIN}"]
    assert "Subject Alternative Name: \n    " + ", ".join(f"DNS:{n}" for n in names) in text, text
    assert "Basic Constraints: critical\n    CA:FALSE\n" in text, text
    assert "Key Usage: critical\n    Digital Signature\n" in text, text
    assert "Extended Key Usage: \n    TLS Web Server Authentication" in text, text

    def verify(name):
        return subprocess.run(
            ["openssl", "verify", "-CAfile", cert, "-purpose", "sslserver",
             "-verify_hostname", name, cert],
            capture_output=True, timeout=30,
        ).returncode == 0

    assert all(verify(n) for n in names)
    assert not verify(f"other.{DOMAIN}")


def test_a_second_setup_run_changes_nothing(setup_tree):
    t = setup_tree
    changed = {
        k: (t.after_first.get(k), t.after_second.get(k))
        for k in t.after_first.keys() | t.after_second.keys()
        if t.after_first.get(k) != t.after_second.get(k)
    }
    assert not changed, f"the second run changed files: {changed}\n{t.second}"
    assert "configuration unchanged" in t.second, t.second
    assert not re.search(r"^\s*(created|updated)\b", t.second, re.M), t.second
    assert "certificate" not in t.second, t.second
    assert f"unchanged DKIM key {t.etc / 'dkimkeys/opendkim.private'}" in t.second, t.second
    # A dry run after it has nothing to show either.
    assert t.after_dry_run == t.after_second
    assert "configuration unchanged" in t.dry_run, t.dry_run
    assert "would" not in t.dry_run and "\n@@ " not in t.dry_run, t.dry_run


def test_the_stock_includes_keep_setups_dovecot_settings(setup_tree):
    """Debian's conf.d files are read around 90-chatmail.conf: what Dovecot
    ends up with must be setup's."""
    conf = setup_tree.etc / "dovecot/dovecot.conf"

    def doveconf(*args):
        return output("doveconf", "-c", conf, "-h", *args).strip()

    assert doveconf("mail_location") == "maildir:~"
    assert doveconf("auth_mechanisms") == "plain"
    assert doveconf("ssl") == "required"
    assert doveconf("ssl_min_protocol") == "TLSv1.3"
    assert doveconf("ssl_cert") == f"<{setup_tree.etc}/ssl/certs/chatmail.pem"
    assert "last_login" in doveconf("-f", "protocol=imap", "mail_plugins").split()
    lmtp_plugins = doveconf("-f", "protocol=lmtp", "mail_plugins").split()
    assert {"quota", "push_notification_lua"} <= set(lmtp_plugins)
    passdbs = [
        line for line in output("doveconf", "-c", conf, "-S").splitlines()
        if re.match(r"passdb/\d+/(driver|args)=", line)
    ]
    # Only ours: the system (PAM) passdb is disabled.
    assert passdbs == [
        "passdb/0/driver=lua",
        f"passdb/0/args=file={setup_tree.etc}/dovecot/chatmail-auth.lua blocking=yes",
    ]


def test_the_overlay_only_moves_the_instance(relay):
    """The Postfix overlay changes nothing but paths, ports and chroot, and
    the running config reaches nothing of the machine's own /etc, /run or
    /var/spool/postfix."""
    (main0, master0), (main1, master1) = relay.postfix_before, relay.postfix_after
    assert main1 == {**main0, **relay.main_overlay}
    renamed = {(s, "inet"): (f"127.0.0.1:{relay.ports[s]}", "inet") for s in INET_SERVICES}
    assert master1.keys() == {renamed.get(k, k) for k in master0}
    for key, fields in master0.items():
        new = master1[renamed.get(key, key)]
        assert new[:2] + new[3:] == fields[:2] + fields[3:], key
        assert new[2] == "n"

    running = "\n".join([
        output("postconf", "-c", relay.postfix_dir, "-n"),
        output("postconf", "-c", relay.postfix_dir, "-M"),
        output("doveconf", "-c", relay.dovecot_conf, "-S"),
        *(f.read_text() for f in relay.run_dir.glob("*.lua")),
    ])
    top = str(relay.top)

    def foreign(path):
        if path == top or path.startswith(top + "/"):
            return False
        if path.startswith(("/run/", "/var/spool/postfix")):
            return True
        # Debian's own settings may name its files (e.g. /etc/ssl/certs).
        return path.startswith(("/etc/", "/var/")) and path not in relay.tree.stock_paths

    assert not [p for p in abs_paths(running) if foreign(p)], running
    # What was moved is what setup points at in production.
    assert sorted(relay.listeners) == [
        "/var/spool/postfix/private/auth",
        "/var/spool/postfix/private/dovecot-lmtp",
    ]
    assert sorted(relay.dicts.values()) == [
        "proxy:/run/chatmail-lastlogin/lastlogin.socket:lastlogin",
        "proxy:/run/chatmail-metadata/metadata.socket:metadata",
    ]


def test_a_first_login_creates_the_account(relay):
    addr, password = fresh_addr(), fresh_password()
    home = relay.mailboxes_dir / addr
    assert not home.exists()
    conn = relay.login(addr, password)
    try:
        assert conn.select("INBOX")[0] == "OK"
        caps = conn.capabilities
    finally:
        conn.logout()
    assert "XCHATMAIL" in caps, caps
    assert (home / "password").read_text().startswith("{SHA512-CRYPT}$6$")
    assert home.stat().st_uid == pwd.getpwnam("vmail").pw_uid
    with pytest.raises(imaplib.IMAP4.error):
        relay.login(addr, password + "x")
    relay.login(addr, password).logout()


def test_encrypted_mail_flows_and_cleartext_is_refused(relay):
    sender, recipient = fresh_addr(), fresh_addr()
    password = fresh_password()
    for addr in [sender, recipient]:
        relay.login(addr, password).logout()
    cases = make_test_mail(sender, recipient)
    encrypted = cases["encrypted-v4-seipdv1"]["raw"]
    message_id = re.search(rb"^Message-ID:\s*(\S+)", encrypted, re.M | re.I).group(1)

    with relay.submission() as smtp:
        smtp.login(sender, password)
        assert smtp.sendmail(sender, [recipient], encrypted) == {}
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(sender, [recipient], cases["cleartext"]["raw"])
    assert refused.value.smtp_code == 523, refused.value
    assert b"Encryption Needed" in refused.value.smtp_error

    maildir = relay.mailboxes_dir / recipient

    def delivered():
        return [
            f for sub in ["new", "cur"] for f in (maildir / sub).glob("*")
            if message_id in f.read_bytes()
        ]

    wait_for(f"delivery into {maildir}", delivered, logs=relay.logs)
    (mail,) = delivered()
    assert b"-----BEGIN PGP MESSAGE-----" in mail.read_bytes()
    # The cleartext one was refused before it was queued: it never arrives.
    assert [f for sub in ["new", "cur"] for f in (maildir / sub).glob("*")] == [mail]
