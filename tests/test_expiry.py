"""Expiry, quota expiry through a real Dovecot quota_warning, the storage
report and newemail, run as the `chatmail` binary an operator runs."""

import json
import os
import pwd
import subprocess
import time
from pathlib import Path

from conftest import CHATMAIL_BIN, encrypted_message

PASSWORD = "s3cret-password"
DAY = 86400
MIB = 1024 * 1024


def chatmail(*args, text=True):
    return subprocess.run(
        [str(CHATMAIL_BIN), *map(str, args)], capture_output=True, text=text, timeout=120
    )


def test_newemail_credentials_create_an_account_on_login(relay):
    res = chatmail("newemail", "--config", relay.info["config"], "--self-signed", text=False)
    assert res.returncode == 0, res.stderr
    head, body = res.stdout.split(b"\r\n\r\n", 1)
    assert head == b"Content-Type: application/json"
    creds = json.loads(body)
    local, domain = creds["email"].split("@")
    assert domain == relay.domain
    assert len(local) == 9 and local.isalnum() and local.islower()
    assert len(creds["password"]) == 12
    assert creds["dclogin_url"].startswith("dclogin:")
    assert not relay.password_file(creds["email"]).exists()
    relay.imap_login(creds["email"], creds["password"]).logout()
    assert relay.password_file(creds["email"]).exists()


def write_message(maildir, ts, size, seq):
    name = f"{ts}.M{seq}P1.sandbox,S={size},W={size}:2,S"
    path = maildir / "cur" / name
    path.write_bytes(b"X" * size)
    os.utime(path, (ts, ts))
    return path


def test_quota_warning_from_dovecot_removes_oldest_mail(tight_relay):
    relay = tight_relay
    addr = relay.fresh_addr()
    relay.imap_login(addr, PASSWORD).logout()
    home = relay.mailboxes_dir / addr
    vmail = pwd.getpwnam("vmail")
    (home / "cur").mkdir(exist_ok=True)
    # Old mail filling the 10 MiB quota to just under the 75 % warning.
    now = int(time.time())
    old = [write_message(home, now - 3 * DAY + i, 100 * 1024, i) for i in range(76)]
    filler = int(10 * MIB * 0.75) - 76 * 100 * 1024 - 500
    old.append(write_message(home, now - 2 * DAY, filler, 99))
    for p in [home / "cur", *old]:
        os.chown(p, vmail.pw_uid, vmail.pw_gid)
    for stale in ("maildirsize", "dovecot.index", "dovecot.index.cache"):
        (home / stale).unlink(missing_ok=True)

    # One more message crosses 75 %: Dovecot runs `chatmail quota-expire`.
    with relay.port25() as smtp:
        smtp.sendmail("x@example.net", [addr], encrypted_message("x@example.net", addr))

    def total():
        return sum(p.stat().st_size for d in ("cur", "new") for p in (home / d).iterdir())

    deadline = time.time() + 20
    while old[0].exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not old[0].exists(), "quota-expire did not run"
    assert total() <= 7 * MIB
    # Oldest first: the newest old message survived, and so did the new mail.
    assert old[-1].exists()
    messages = relay.wait_for_messages(addr, PASSWORD, count=1, timeout=5)
    assert [m for m in messages if b"BEGIN PGP MESSAGE" in m]


def make_tree(root, now):
    """Two accounts: one inactive for 100 days, one active with old mail."""
    mail = root / "mail"
    accounts = {}
    for name, last_login in (("inactive1", now - 100 * DAY), ("activeone", now)):
        home = mail / f"{name}@chat.localhost"
        for d in ("cur", "new", "tmp"):
            (home / d).mkdir(parents=True)
        (home / "password").write_text("{SHA512-CRYPT}$6$x$y")
        day = last_login // DAY * DAY
        os.utime(home / "password", (day, day))
        accounts[name] = home
    home = accounts["activeone"]
    old = write_message(home, now - 30 * DAY, 1000, 1)
    fresh = write_message(home, now - DAY, 1000, 2)
    ini = root / "chatmail.ini"
    ini.write_text(f"[params]\nmail_domain = chat.localhost\nmailboxes_dir = {mail}\n")
    return ini, accounts, old, fresh


def test_expire_dry_run_then_remove(tmp_path):
    now = int(time.time())
    ini, accounts, old, fresh = make_tree(tmp_path, now)

    dry = chatmail("expire", "--config", ini)
    assert dry.returncode == 0, dry.stderr
    assert str(accounts["inactive1"]) in dry.stdout
    assert str(old) in dry.stdout
    assert accounts["inactive1"].exists() and old.exists()

    real = chatmail("expire", "--config", ini, "--remove")
    assert real.returncode == 0, real.stderr
    summary = real.stdout.strip().splitlines()[-1]
    assert summary.startswith("Removed 1 out of 2 mailboxes and 1 out of 2 files"), summary
    assert not accounts["inactive1"].exists()
    assert not old.exists()
    assert fresh.exists() and accounts["activeone"].exists()

    # --days pretends time has passed: now the fresh mail is old too.
    later = chatmail("expire", "--config", ini, "--remove", "--days", "25")
    assert later.returncode == 0, later.stderr
    assert not fresh.exists()


def test_report_writes_a_textfile(tmp_path):
    ini, _, _, _ = make_tree(tmp_path, int(time.time()))
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    res = chatmail("report", "--config", ini, "--textfile", textfile_dir)
    assert res.returncode == 0, res.stderr
    prom = (textfile_dir / "chatmail.prom").read_text()
    assert "# TYPE chatmail_accounts gauge" in prom
    assert "\nchatmail_accounts 2\n" in prom
    assert not [p for p in textfile_dir.iterdir() if p.name != "chatmail.prom"]


def test_bad_config_is_one_clear_line(tmp_path):
    ini = tmp_path / "chatmail.ini"
    ini.write_text("[params]\nmail_domain = chat.localhost\nmax_load_1m = lots\n")
    res = chatmail("expire", "--config", ini)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.startswith("chatmail:")]
    assert lines == [f'chatmail: config {ini}: max_load_1m = "lots": not a number'], res.stderr
