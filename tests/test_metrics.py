"""Native Prometheus metrics of every daemon (docs/metrics.md), read from a
sandbox relay of its own after a scripted run through real Postfix and
Dovecot: each counter has exactly the value the run implies, and no label
carries an address or a token. Then a real Prometheus scrapes the sandbox
with the shipped scrape config and promtool checks and unit-tests the
shipped alert rules."""

import imaplib
import json
import re
import smtplib
import socket
import ssl
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from conftest import CHATMAIL_BIN, REPO, make_test_mail, start_sandbox, stop_sandbox
from prometheus_client.openmetrics.parser import text_string_to_metric_families

PASSWORD = "metrics-password"
MONITORING = REPO / "monitoring"
DAEMONS = ["auth", "lastlogin", "metadata", "milter", "policy"]
VERSION = re.search(r'^version = "(.*)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))


def scrape(url):
    """The samples at `url` as {(name, frozenset(labels)): value}, parsed
    with prometheus_client's OpenMetrics parser (which also checks the
    format: it raises on anything malformed, and needs the final # EOF)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == (
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        )
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def set_token(relay, addr, token):
    conn = relay.imap_login(addr, PASSWORD)
    typ, _ = conn._simple_command(
        "SETMETADATA", "INBOX", f'(/private/devicetoken "{token}")'
    )
    conn.logout()
    assert typ == "OK"


def send(smtp, sender, recipient, raw):
    """Sends one message; returns the SMTP code of the answer to DATA."""
    try:
        smtp.sendmail(sender, [recipient], raw)
    except smtplib.SMTPDataError as e:
        return e.smtp_code
    return 250


def wait_until(what, check, timeout=20):
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def run(push_gateway):
    """A fresh relay and the scripted run against it; yields the relay, the
    user data the run used, and the samples of each daemon afterwards."""
    proc, relay = start_sandbox(f"push_notification_url = {push_gateway.url}\n")
    try:
        a, b, c = relay.fresh_addr(), relay.fresh_addr(), relay.fresh_addr()
        too_short = relay.fresh_addr(length=5)
        ok_token, gone_token = "tok-metrics-" + a[:9], "gone-metrics-" + c[:9]
        stranger = "someone@example.net"
        # Logins: three accounts created, one refused for its length.
        for addr in (a, b, c):
            relay.imap_login(addr, PASSWORD).logout()
        assert not relay.can_login(too_short, PASSWORD)
        # Push tokens (one login each): b's gateway answers 200, c's 410.
        set_token(relay, b, ok_token)
        set_token(relay, c, gone_token)

        # Outgoing mail is a's own corpus.
        corpus_a = make_test_mail(a, b)
        with relay.submission() as smtp:
            smtp.login(a, PASSWORD)
            # Outgoing: encrypted (delivered to b: a push to ok_token), then
            # cleartext (refused).
            assert send(smtp, a, b, corpus_a["encrypted-v4-seipdv1"]["raw"]) == 250
            assert send(smtp, a, b, corpus_a["cleartext"]["raw"]) == 523
        # Incoming mail is From the stranger's domain, whose DKIM key the
        # test DNS serves (names under localhost. never reach a DNS server).
        corpus_s = make_test_mail(stranger, c)
        with relay.port25() as smtp:
            # Incoming: encrypted to c (a push to gone_token, answered 410),
            # then cleartext to b (envelope), who accepts only encrypted mail.
            assert send(smtp, stranger, c, corpus_s["encrypted-v4-seipdv1"]["raw"]) == 250
            assert send(smtp, stranger, b, corpus_s["cleartext"]["raw"]) == 523
        push_gateway.wait_for(ok_token)
        push_gateway.wait_for(gone_token)
        tokens = relay.mailboxes_dir / c / "metadata.json"
        wait_until(
            "the gone token to be removed",
            lambda: gone_token not in json.loads(tokens.read_text()).get("devicetoken", {}),
        )
        # The counters are bumped right after the answers the run waited
        # for; a short pause lets the last of them land.
        time.sleep(1)
        samples = {d: scrape(relay.info["metrics"][d]) for d in DAEMONS}
        user_data = [a, b, c, too_short, ok_token, gone_token, stranger, PASSWORD]
        yield relay, user_data, samples
    finally:
        stop_sandbox(proc, relay)


# Every counter and histogram count after the run, per daemon. Logins:
# a, b, c create their accounts (3 created); the short address is refused
# for its length; the two token logins and a's submission login find
# existing accounts (3 found). The last_login plugin commits on the five
# IMAP logins and moves the day of the three new accounts. The metadata
# daemon registers two tokens, queues one notification per delivery (two:
# a -> b and stranger -> c), POSTs them (200 for b's token, 410 for c's,
# which is then removed) and nudges each inbox once. The milter decides
# four messages, signs the encrypted one a submits and verifies the
# signature of the encrypted one from port 25; the policy service sees a
# RCPT and a DATA request for each.
EXPECTED = {
    "auth": {
        ("chatmail_auth_lookups_total", ("result", "created")): 3,
        ("chatmail_auth_lookups_total", ("result", "found")): 3,
        ("chatmail_auth_lookups_total", ("result", "refused")): 1,
        ("chatmail_auth_lookups_total", ("result", "invalid")): 0,
        ("chatmail_auth_lookups_total", ("result", "failed")): 0,
        ("chatmail_auth_refusals_total", ("rule", "localpart_length")): 1,
        ("chatmail_auth_refusals_total", ("rule", "nocreate")): 0,
        ("chatmail_auth_refusals_total", ("rule", "disk")): 0,
        ("chatmail_auth_account_creation_seconds_count",): 3,
        ("chatmail_auth_accounts",): 3,
    },
    "lastlogin": {
        ("chatmail_lastlogin_commits_total", ("result", "ok")): 5,
        ("chatmail_lastlogin_commits_total", ("result", "failed")): 0,
        ("chatmail_lastlogin_updates_total",): 3,
    },
    "metadata": {
        ("chatmail_metadata_tokens_registered_total",): 2,
        ("chatmail_metadata_tokens_removed_total", ("reason", "gone")): 1,
        ("chatmail_metadata_tokens_removed_total", ("reason", "client")): 0,
        ("chatmail_metadata_tokens_expired_total",): 0,
        ("chatmail_metadata_notifications_queued_total",): 2,
        ("chatmail_metadata_push_posts_total", ("class", "2xx")): 1,
        ("chatmail_metadata_push_posts_total", ("class", "4xx")): 1,
        ("chatmail_metadata_push_posts_total", ("class", "5xx")): 0,
        ("chatmail_metadata_push_posts_total", ("class", "error")): 0,
        ("chatmail_metadata_push_retries_total",): 0,
        ("chatmail_metadata_push_given_up_total", ("reason", "attempts")): 0,
        ("chatmail_metadata_push_given_up_total", ("reason", "deadline")): 0,
        ("chatmail_metadata_push_wait_seconds_count",): 2,
        ("chatmail_metadata_nudges_total",): 2,
        ("chatmail_metadata_push_queue_depth",): 0,
        ("chatmail_metadata_push_oldest_waiting_seconds",): 0,
    },
    "milter": {
        ("chatmail_milter_messages_total", ("direction", "outgoing"), ("verdict", "encrypted")): 1,
        ("chatmail_milter_messages_total", ("direction", "outgoing"), ("verdict", "refused_cleartext")): 1,
        ("chatmail_milter_messages_total", ("direction", "incoming"), ("verdict", "encrypted")): 1,
        ("chatmail_milter_messages_total", ("direction", "incoming"), ("verdict", "refused_cleartext")): 1,
        ("chatmail_milter_messages_total", ("direction", "outgoing"), ("verdict", "tempfail")): 0,
        ("chatmail_milter_messages_total", ("direction", "unknown"), ("verdict", "too_big")): 0,
        ("chatmail_milter_decision_seconds_count",): 4,
        ("chatmail_milter_dkim_total", ("operation", "sign"), ("result", "ok")): 1,
        ("chatmail_milter_dkim_total", ("operation", "sign"), ("result", "failed")): 0,
        ("chatmail_milter_dkim_total", ("operation", "verify"), ("result", "pass")): 1,
        ("chatmail_milter_dkim_total", ("operation", "verify"), ("result", "fail")): 0,
    },
    "policy": {
        ("chatmail_policy_requests_total", ("answer", "dunno"), ("state", "rcpt")): 4,
        ("chatmail_policy_requests_total", ("answer", "dunno"), ("state", "data")): 4,
        ("chatmail_policy_requests_total", ("answer", "reply"), ("state", "rcpt")): 0,
        ("chatmail_policy_requests_total", ("answer", "reply"), ("state", "data")): 0,
        ("chatmail_policy_rate_limited_total",): 0,
    },
}


@pytest.mark.parametrize("daemon", DAEMONS)
def test_every_counter_counts_the_run(run, daemon):
    relay, _, samples = run
    got = {}
    for name, *labels in EXPECTED[daemon]:
        got[(name, *labels)] = value(samples[daemon], name, **dict(labels))
    assert got == EXPECTED[daemon]
    # Messages not in the table stayed at zero.
    if daemon == "milter":
        total = sum(v for (n, _), v in samples[daemon].items() if n == "chatmail_milter_messages_total")
        assert total == 4
    # Every daemon says who it is and when it started.
    assert value(samples[daemon], "chatmail_build_info", daemon=daemon, version=VERSION) == 1
    started = value(samples[daemon], "process_start_time_seconds")
    assert time.time() - 600 < started < time.time()


def test_no_label_carries_user_data(run):
    _, user_data, samples = run
    for daemon, s in samples.items():
        for (name, labels) in s:
            for key, v in labels:
                assert "@" not in v, (daemon, name, key, v)
                for secret in user_data:
                    assert secret not in v, (daemon, name, key, v)
                    assert secret.split("@")[0] not in v, (daemon, name, key, v)


@pytest.mark.parametrize("daemon", ["milter", "lastlogin"])
def test_open_connections_follow_clients(run, daemon):
    relay, _, _ = run
    url = relay.info["metrics"][daemon]

    def open_now():
        return value(scrape(url), "chatmail_open_connections")

    # After the run nobody holds these sockets open.
    wait_until(f"{daemon} to be idle", lambda: open_now() == 0)
    clients = []
    for _ in range(2):
        c = socket.socket(socket.AF_UNIX)
        c.connect(relay.info["sockets"][daemon])
        clients.append(c)
    wait_until("two open connections", lambda: open_now() == 2, timeout=5)
    for c in clients:
        c.close()
    wait_until("no open connection", lambda: open_now() == 0, timeout=5)


def raw_http(url, request):
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_the_endpoint_serves_only_get_metrics(run):
    relay, _, _ = run
    url = relay.info["metrics"]["policy"]
    out = raw_http(url, b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 404 Not Found\r\n"), out
    out = raw_http(url, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n"), out
    assert b"\r\nallow: GET, HEAD\r\n" in out, out
    # Garbage is answered 400 and the endpoint keeps serving.
    out = raw_http(url, b"\x00\x01 not http\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out
    assert value(scrape(url), "chatmail_build_info", daemon="policy", version=VERSION) == 1


def doctor(relay, metrics):
    args = [str(CHATMAIL_BIN), "doctor", "--config", relay.info["config"],
            "--postfix-config-dir", relay.info["postfix_config_dir"],
            "--dovecot-config", relay.info["dovecot_config"]]
    for daemon, path in relay.info["sockets"].items():
        args += ["--socket", f"{daemon}={path}"]
    for daemon, url in metrics.items():
        args += ["--metrics", f"{daemon}={url}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout


def test_doctor_checks_each_endpoint(run):
    relay, _, _ = run
    if relay.info.get("root_exec"):
        # As in test_web.py: doctor's doveconf call cannot run the Debian
        # root's doveconf through the PATH shims; not resolved.
        pytest.skip("chatmail doctor against a Debian root's doveconf")
    metrics = relay.info["metrics"]
    code, out = doctor(relay, metrics)
    assert code == 0, out
    for daemon in DAEMONS:
        assert re.search(
            rf"^OK metrics {daemon}: {re.escape(metrics[daemon])} answers \(\d+ series\)$", out, re.M
        ), out
    # The milter's port pointed at the policy daemon's endpoint, and at a
    # port nobody listens on.
    swapped = dict(metrics, milter=metrics["policy"], lastlogin="inet:127.0.0.1:1")
    code, out = doctor(relay, swapped)
    assert code != 0, out
    assert f"FAIL metrics milter: {metrics['policy']}: not chatmail milter's metrics " \
        '(chatmail_build_info{daemon="policy",version="' in out, out
    assert "FAIL metrics lastlogin: http://127.0.0.1:1/metrics: cannot connect" in out, out
    assert re.search(r"^FAIL ", out.replace("FAIL metrics milter", "").replace("FAIL metrics lastlogin", ""), re.M) is None, out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prometheus_scrapes_every_daemon_with_the_shipped_config(run, tmp_path):
    relay, _, _ = run
    # The storage report for node-exporter's textfile collector, as
    # chatmail-report.service writes it.
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    subprocess.run([str(CHATMAIL_BIN), "report", "--config", relay.info["config"],
                    "--textfile", str(textfile)], check=True, capture_output=True, timeout=60)
    node_port, prom_port = free_port(), free_port()
    # The shipped config with the sandbox's ports, a 1 s interval and the
    # rules from the repository.
    config = (MONITORING / "prometheus.yml").read_text()
    for daemon, url in relay.info["metrics"].items():
        port = 9540 + DAEMONS.index(daemon)
        config = config.replace(f'"127.0.0.1:{port}"', '"' + url.split("//")[1].split("/")[0] + '"')
    config = config.replace('"127.0.0.1:9100"', f'"127.0.0.1:{node_port}"')
    config = config.replace("30s", "1s")
    config = config.replace("/usr/share/chatmail-helpers/monitoring/", str(MONITORING) + "/")
    assert '"127.0.0.1:954' not in config
    (tmp_path / "prometheus.yml").write_text(config)
    check = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    node = subprocess.Popen(
        ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{node_port}",
         "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={textfile}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "node.log", "w"))
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"))
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def get(path):
        try:
            with urllib.request.urlopen(api + path, timeout=5) as r:
                return json.loads(r.read())["data"]
        except OSError:
            return None

    def query(q):
        data = get("/query?" + urllib.parse.urlencode({"query": q}))
        return {r["metric"].get("daemon", ""): float(r["value"][1]) for r in data["result"]} if data else {}

    try:
        def all_up():
            targets = (get("/targets") or {}).get("activeTargets", [])
            return len(targets) == 6 and all(t["health"] == "up" for t in targets)

        wait_until("every target up", all_up, timeout=60)
        targets = get("/targets")["activeTargets"]
        assert sorted(t["labels"].get("daemon", t["labels"]["job"]) for t in targets) == sorted(DAEMONS + ["node"])
        # The daemons' counters and the storage report, through Prometheus.
        wait_until("the samples", lambda: query('chatmail_auth_lookups_total{result="created"}') == {"auth": 3.0})
        wait_until("the report", lambda: query("chatmail_accounts") == {"": 3.0})
        # The rules are loaded and the relay is healthy: nothing fires.
        rules = get("/rules")["groups"]
        assert [g["name"] for g in rules] == ["chatmail"]
        assert all(r["state"] == "inactive" for g in rules for r in g["rules"]), rules
    finally:
        for p in (prom, node):
            p.terminate()
            p.wait(timeout=30)


def test_promtool_checks_and_tests_the_shipped_rules():
    out = subprocess.run(["promtool", "check", "rules", str(MONITORING / "chatmail.rules.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "SUCCESS: 12 rules found" in out.stdout, out.stdout + out.stderr
    out = subprocess.run(["promtool", "test", "rules", str(MONITORING / "chatmail.rules.test.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def run_deploy_hook(tmp_path, days):
    """The shipped certbot deploy hook, its paths moved into `tmp_path` (as
    the sandbox does) and the reload left out, after certbot "renewed" a
    self-signed certificate valid for `days`. Returns the installed
    certificate's path and the hook's result."""
    lineage, ssl_dir = tmp_path / "live", tmp_path / "ssl"
    lineage.mkdir(exist_ok=True)
    ssl_dir.mkdir(exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", str(days), "-subj", "/CN=chat.example.org",
                    "-keyout", str(lineage / "privkey.pem"), "-out", str(lineage / "fullchain.pem")],
                   check=True, capture_output=True, timeout=60)
    hook = (REPO / "nginx" / "certbot-deploy.hook").read_text()
    assert hook.count("systemctl reload postfix dovecot nginx\n") == 1
    hook = (hook.replace("systemctl reload postfix dovecot nginx\n", "")
            .replace("/etc/ssl/certs/", f"{ssl_dir}/").replace("/etc/ssl/private/", f"{ssl_dir}/")
            .replace("/var/lib/prometheus/node-exporter", str(tmp_path / "textfile")))
    (tmp_path / "hook").write_text(hook)
    out = subprocess.run(["sh", str(tmp_path / "hook")], env={"PATH": "/usr/bin:/bin", "RENEWED_LINEAGE": str(lineage)},
                         capture_output=True, text=True, timeout=60)
    return ssl_dir / "chatmail.pem", out


def test_the_deploy_hook_writes_the_certificate_expiry_textfile(tmp_path):
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    cert, out = run_deploy_hook(tmp_path, 20)
    assert out.returncode == 0, out.stdout + out.stderr
    # The expiry as Python's own X.509 decoder reads it from the installed file.
    expiry = int(ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert(str(cert))["notAfter"]))
    assert abs(expiry - (time.time() + 20 * 86400)) < 120
    written = (textfile / "chatmail-tls.prom").read_text()
    assert written == (
        "# HELP chatmail_tls_certificate_expiry_timestamp_seconds Unix time the installed TLS certificate expires.\n"
        "# TYPE chatmail_tls_certificate_expiry_timestamp_seconds gauge\n"
        f'chatmail_tls_certificate_expiry_timestamp_seconds{{name="chatmail.pem"}} {expiry}\n'
    )
    assert (textfile / "chatmail-tls.prom").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in textfile.iterdir()) == ["chatmail-tls.prom"]
    # A renewal replaces the value.
    _, out = run_deploy_hook(tmp_path, 90)
    assert out.returncode == 0, out.stdout + out.stderr
    renewed = int((textfile / "chatmail-tls.prom").read_text().split()[-1])
    assert abs(renewed - expiry - 70 * 86400) < 120
    # A certificate openssl cannot read: the hook fails and the last good
    # value stays, with no temp file left.
    before = (textfile / "chatmail-tls.prom").read_text()
    (tmp_path / "live" / "fullchain.pem").write_text("not a certificate\n")
    out = subprocess.run(["sh", str(tmp_path / "hook")], env={"PATH": "/usr/bin:/bin", "RENEWED_LINEAGE": str(tmp_path / "live")},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert (textfile / "chatmail-tls.prom").read_text() == before
    assert sorted(p.name for p in textfile.iterdir()) == ["chatmail-tls.prom"]


def test_the_deploy_hook_installs_without_a_node_exporter_directory(tmp_path):
    cert, out = run_deploy_hook(tmp_path, 20)
    assert out.returncode == 0, out.stdout + out.stderr
    assert cert.read_bytes() == (tmp_path / "live" / "fullchain.pem").read_bytes()
    assert not (tmp_path / "textfile").exists()


def test_the_dashboard_has_a_row_per_daemon_and_only_existing_metrics(run):
    _, _, samples = run
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert rows == ["relay"] + DAEMONS
    exported = {name for s in samples.values() for (name, _) in s}
    report = {"chatmail_accounts", "chatmail_active_accounts",
              "chatmail_tls_certificate_expiry_timestamp_seconds"}  # textfiles
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            for name in re.findall(r"\b(?:chatmail|process)_[a-z0-9_]+", target["expr"]):
                assert name in exported | report, (panel["title"], name)


def test_a_daemon_whose_metrics_port_is_taken_keeps_serving(tmp_path):
    # Mail must not stop for a counter: the error is logged once and the
    # policy service answers as usual.
    ini = tmp_path / "chatmail.ini"
    ini.write_text(f"[params]\nmail_domain = chat.localhost\nmailboxes_dir = {tmp_path}/mail\n")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    sock = tmp_path / "policy.socket"
    log = tmp_path / "policy.log"
    proc = subprocess.Popen(
        [str(CHATMAIL_BIN), "policy", "--config", str(ini), "--listen", f"unix:{sock}",
         "--metrics-listen", f"inet:127.0.0.1:{port}"],
        stderr=open(log, "w"),
    )
    try:
        wait_until("the policy socket", sock.exists, timeout=10)
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(str(sock))
            c.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=x@example.org\n\n")
            assert c.recv(100) == b"action=DUNNO\n\n"
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        taken.close()
    errors = [l for l in log.read_text().splitlines() if "ERROR" in l]
    assert len(errors) == 1, errors
    assert f"metrics endpoint on inet:127.0.0.1:{port}: Address already in use" in errors[0], errors
