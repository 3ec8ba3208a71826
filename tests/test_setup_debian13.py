"""`chatmail setup --etc` on a copy of Debian 13's stock /etc/postfix and
/etc/dovecot (Postfix 3.10, Dovecot 2.4), then that Postfix and Dovecot
started from the copy inside the Debian 13 root, with our daemons on this
machine as the shipped systemd units run them.

Runs only when CHATMAIL_DEBIAN_ROOT names a Debian 13 root
(scripts/debian13-root; scripts/test's second pass). The same checks as
tests/test_setup.py, with a lighter overlay: the root sees the test's run
directory as its /run and the test's queue as /var/spool/postfix, so every
socket path setup wrote is used as written.
"""

import re
from pathlib import Path

import pytest
import test_setup
from conftest import CHATMAIL_BIN, DEBIAN_ROOT
from test_setup import (  # noqa: F401  (collected here with this module's fixtures)
    PrivateRelay,
    run,
    test_a_first_login_creates_the_account,
    test_a_second_setup_run_changes_nothing,
    test_encrypted_mail_flows_and_cleartext_is_refused,
)

pytestmark = pytest.mark.skipif(
    not DEBIAN_ROOT, reason="needs CHATMAIL_DEBIAN_ROOT (scripts/debian13-root)"
)


def root_exec(root, top, run_dir, queue):
    """A wrapper running the root's programs: private mount namespace,
    the test directory at its own path, run_dir as /run, queue as the
    Postfix queue, this machine's users."""
    script = top / "root-exec"
    script.write_text(
        "#!/bin/sh\n"
        "exec unshare --mount --propagation private -- sh -ec '\n"
        f'  mount -t tmpfs -o mode=1777 tmpfs "{root}/tmp"\n'
        f'  mkdir -p "{root}{top}"\n'
        f'  mount --bind "{top}" "{root}{top}"\n'
        f'  mount --bind "{run_dir}" "{root}/run"\n'
        f'  mount --bind "{queue}" "{root}/var/spool/postfix"\n'
        f'  mount --bind /etc/passwd "{root}/etc/passwd"\n'
        f'  mount --bind /etc/group "{root}/etc/group"\n'
        f'  mount -t proc proc "{root}/proc"\n'
        f'  exec chroot "{root}" "$@"\n'
        "' sh \"$@\"\n"
    )
    script.chmod(0o755)
    return script


class Debian13Relay(PrivateRelay):
    """A PrivateRelay whose Postfix and Dovecot are the root's, run through
    root_exec: the queue and /run need no moving, so the overlay only sets
    ports, logs and state."""

    INSTANCE = "chatmail-setup13"

    def prepare(self):
        super().prepare()
        self.wrapper = [root_exec(DEBIAN_ROOT, self.top, self.run_dir, self.queue)]

    def postfix_main(self):
        settings = super().postfix_main()
        # The root sees the test's queue as /var/spool/postfix.
        del settings["queue_directory"]
        return settings

    def dovecot_overlay(self):
        (self.etc / "dovecot/local.conf").write_text("\n".join(self.dovecot_instance()) + "\n")


@pytest.fixture(scope="module")
def setup_tree():
    # The root's group ids are not this machine's, whose /etc/group the
    # root sees: the certificate directories stay root's.
    yield from test_setup.tree_in_tmp(
        "chatmail-setup13-", root=Path(DEBIAN_ROOT), owners=False
    )


@pytest.fixture(scope="module")
def relay(setup_tree):
    yield from test_setup.started(Debian13Relay(setup_tree))


def test_setup_writes_the_dovecot_24_dialect(setup_tree):
    dovecot = setup_tree.etc / "dovecot"
    conf = (dovecot / "conf.d/90-chatmail.conf").read_text()
    assert "passdb lua {" in conf and "dovecot/2.4/chatmail.conf" in conf
    assert (dovecot / "chatmail-auth.lua").read_text() == (
        test_setup.REPO / "dovecot/chatmail-auth.lua"
    ).read_text()
    assert not (dovecot / "chatmail-auth.conf.ext").exists()
    # Dovecot 2.4 itself accepts the result.
    for d in ["run", "spool/postfix"]:
        (setup_tree.top / d).mkdir(parents=True, exist_ok=True)
    exec_ = root_exec(DEBIAN_ROOT, setup_tree.top, setup_tree.top / "run",
                      setup_tree.top / "spool/postfix")
    out = run(exec_, "doveconf", "-c", dovecot / "dovecot.conf", "-n")[1]
    # Only ours: the system (PAM) passdb is disabled.
    assert re.findall(r"^(passdb \S+)", out, re.M) == ["passdb lua"], out
    assert re.search(r"^mail_driver = maildir$", out, re.M), out


def test_doctor_reads_the_dovecot_24_dialect(setup_tree):
    out = run(CHATMAIL_BIN, "doctor", "--etc", setup_tree.etc, check=False)[1]
    conf = setup_tree.etc / "dovecot/conf.d/90-chatmail.conf"
    for daemon, block in [("metadata", "mail_attribute"), ("lastlogin", "last_login"),
                          ("auth", "passdb lua")]:
        assert (
            f"OK dovecot {daemon}: {block} in {conf} uses /run/chatmail-{daemon}/{daemon}.socket"
            in out
        ), out
    assert f"OK tls {setup_tree.etc}/ssl/certs/chatmail.pem" in out, out
