"""`chatmail doctor` against the live sandbox relay: real Postfix and Dovecot
configuration, our real daemons on their sockets."""

import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import CHATMAIL_BIN

# Every check doctor makes on a healthy relay; `tls` is followed by the
# certificate's path, `nocreate` is an INFO line.
OK_CHECKS = {
    "config",
    "socket auth",
    "socket lastlogin",
    "socket metadata",
    "socket policy",
    "socket milter",
    "socket transport",
    "socket mxdeliv",
    "postfix milter",
    "postfix policy",
    "postfix transport",
    "dovecot metadata",
    "dovecot lastlogin",
    "dovecot auth",
    "tls",
    "mailboxes",
    "disk",
    "memory",
}

LINE = re.compile(r"^(OK|FAIL|INFO) ([^:]+): (.*)$")


def run_doctor(relay, postfix_config_dir=None, extra=(), env=None, stderr=None):
    """Runs doctor pointed at the sandbox's files and sockets; returns
    (exit code, {check name: (status, detail)}, output). With `stderr` a
    list, doctor's stderr is appended to it."""
    info = relay.info
    args = [
        str(CHATMAIL_BIN),
        "doctor",
        "--config",
        info["config"],
        "--postfix-config-dir",
        str(postfix_config_dir or info["postfix_config_dir"]),
        "--dovecot-config",
        info["dovecot_config"],
        *extra,
    ]
    for daemon, path in info["sockets"].items():
        args += ["--socket", f"{daemon}={path}"]
    # Generous: a hung check shows up as TimeoutExpired, not a slow test.
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    if stderr is not None:
        stderr.append(out.stderr)
    checks = {}
    for line in out.stdout.splitlines():
        m = LINE.match(line)
        if m:
            status, name, detail = m.groups()
            name = "tls" if name.startswith("tls ") else name
            assert name not in checks, out.stdout
            checks[name] = (status, detail)
    return out.returncode, checks, out.stdout + out.stderr


def test_the_live_relay_passes(relay):
    code, checks, output = run_doctor(relay)
    assert code == 0, output
    assert {n for n, (s, _) in checks.items() if s == "OK"} - {"inotify"} == OK_CHECKS, output
    assert set(checks) == OK_CHECKS | {"nocreate", "inotify", "dns"}, output
    assert checks["nocreate"][0] == "INFO", output
    # Names under localhost. never reach a DNS server (the live DNS checks
    # run in test_federation.py).
    assert checks["dns"][0] == "INFO" and "cannot check" in checks["dns"][1], output
    # The machine's limit, read back, and the sandbox's own IDLE connections
    # counted (as root): OK at the package's value, INFO below it.
    limit = int(open("/proc/sys/fs/inotify/max_user_instances").read())
    status, detail = checks["inotify"]
    assert status == ("OK" if limit >= 65536 else "INFO"), output
    assert re.match(rf"\d+ in use by IMAP connections, fs.inotify.max_user_instances = {limit}", detail), output
    assert f"all {len(checks)} checks passed" in output, output
    # The figures are measured where the mailboxes are.
    assert relay.info["mailboxes_dir"] in checks["disk"][1], output
    assert "min_free_disk_space = 1G" in checks["disk"][1], output
    assert "min_available_memory = 200M" in checks["memory"][1], output
    assert relay.info["sockets"]["milter"] in checks["socket milter"][1], output


@pytest.mark.parametrize("daemon", ["auth", "lastlogin", "metadata", "policy", "milter"])
def test_a_stopped_daemon_is_named(relay, daemon):
    # SIGSTOP, not SIGTERM: the sandbox tears itself down when a daemon
    # exits. A stopped daemon still has its socket and the kernel still
    # completes connects, so only a timeout can tell.
    pid = relay.info["pids"][daemon]
    os.kill(pid, signal.SIGSTOP)
    try:
        code, checks, output = run_doctor(relay)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert code != 0, output
    status, detail = checks[f"socket {daemon}"]
    assert status == "FAIL", output
    assert "no answer within" in detail, output
    assert f"fix: systemctl enable --now chatmail-{daemon}.service" in output, output
    failed = {n for n, (s, _) in checks.items() if s == "FAIL"}
    assert failed == {f"socket {daemon}"}, output
    # Back to healthy once it runs again.
    code, checks, output = run_doctor(relay)
    assert code == 0, output


@pytest.mark.parametrize(
    "setting, value, check",
    [
        ("smtpd_milters", "unix:chatmail/wrong-milter.socket", "postfix milter"),
        (
            "smtpd_recipient_restrictions",
            "check_policy_service { unix:chatmail/wrong-policy.socket, timeout=10s, "
            "default_action=DEFER_IF_PERMIT }",
            "postfix policy",
        ),
    ],
)
def test_a_wrong_socket_in_postfix_is_named(relay, tmp_path, setting, value, check):
    # A copy: the shared sandbox's own files are never changed.
    copy = tmp_path / "postfix"
    shutil.copytree(relay.info["postfix_config_dir"], copy)
    subprocess.run(
        ["postconf", "-c", str(copy), "-e", f"{setting}={value}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    wrong = re.search(r"unix:(\S+?\.socket)", value).group(1)
    assert wrong in (copy / "main.cf").read_text()

    code, checks, output = run_doctor(relay, postfix_config_dir=copy)
    assert code != 0, output
    status, detail = checks[check]
    assert status == "FAIL", output
    assert relay.info["sockets"][check.split()[1]] in detail, output
    failed = {n for n, (s, _) in checks.items() if s == "FAIL"}
    assert failed == {check}, output
    # The daemons themselves are fine.
    assert checks["socket milter"][0] == "OK", output
    assert checks["socket policy"][0] == "OK", output


WEB_CHECKS = {"web home", "web autoconfig", "web new", "web www", "web mta-sts", "web mxdeliv"}


def test_a_self_signed_relay_passes_only_with_its_certificate_given(relay, tmp_path):
    """The sandbox's certificate is self-signed, as setup's is before
    `--acme`: no client trusts it, so every page fails against the system's
    CAs, even when this machine's bundle holds it; given as `--ca-file`, it
    passes on every name (an end-entity certificate for the domain,
    `mta-sts.` and `www.`). Doctor prints its report and nothing else."""
    info = relay.info
    cert = info["tls_cert"]
    web = ["--https-address", f"127.0.0.1:{info['https_port']}"]
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    env.pop("SSL_CERT_FILE", None)
    errors = []

    code, checks, output = run_doctor(relay, extra=web, env=env, stderr=errors)
    assert code == 1, output
    assert {n for n, (s, _) in checks.items() if s == "FAIL"} == WEB_CHECKS, output
    for name in WEB_CHECKS:
        assert "invalid peer certificate: UnknownIssuer" in checks[name][1], output
    assert "web trust" not in checks, output

    # A bundle that holds the relay's certificate, as a platform verifier
    # reading every PEM of /etc/ssl/certs would: still untrusted.
    bundle = tmp_path / "bundle.crt"
    system = open("/etc/ssl/certs/ca-certificates.crt").read()
    bundle.write_text(system + open(cert).read())
    code, checks, output = run_doctor(
        relay, extra=web, env=dict(env, SSL_CERT_FILE=str(bundle)), stderr=errors
    )
    assert code == 1, output
    assert {n for n, (s, _) in checks.items() if s == "FAIL"} == WEB_CHECKS, output
    status, detail = checks["web trust"]
    assert status == "INFO" and detail.startswith(f"{bundle} holds 1 of the relay's own"), output

    code, checks, output = run_doctor(
        relay, extra=[*web, "--ca-file", cert], env=env, stderr=errors
    )
    assert code == 0, output
    base = f"https://{relay.domain}:{info['https_port']}"
    assert {n: v for n, v in checks.items() if n.startswith("web ")} == {
        "web home": ("OK", f"{base}/ answers 200"),
        "web autoconfig": ("OK", f"{base}/.well-known/autoconfig/mail/config-v1.1.xml answers 200"),
        "web new": ("OK", f"{base}/new answers 302"),
        "web www": ("OK", f"https://www.{relay.domain}:{info['https_port']}/ answers 301"),
        "web mta-sts": (
            "OK",
            f"https://mta-sts.{relay.domain}:{info['https_port']}/.well-known/mta-sts.txt"
            " answers 200",
        ),
        "web mxdeliv": ("OK", f"{base}/mxdeliv answers 405"),
    }, output
    # Not one line of the libraries' logs (rustls's "failed to verify TLS
    # certificate") on stderr; the failing runs exit 1 with no message.
    assert errors == [""] * 3, errors
