"""IMAP hibernation as shipped, on Dovecot 2.3 (dovecot/chatmail.conf) and
2.4 (dovecot/2.4/chatmail.conf) alike: an IDLE connection moves into
imap-hibernate after 1 s and is woken by new mail; no client is offered
COMPRESS, under which 2.4 cannot hibernate a connection; and every delivery,
including mail a user sent to themselves, makes chatmail-metadata nudge the
inbox, which is what keeps hibernation from losing a delivery that lands
just before the hand-over (docs/latency.md).
"""

import ctypes
import os
import select
import smtplib
import struct
import time
from pathlib import Path

import pytest
from conftest import encrypted_message

PASSWORD = "s3cret-password"
NUDGE_FILE = ".chatmail-nudge"
IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x80, 0x100, 0x200


class Inotify:
    """inotify(7) on one directory, through libc (no extra package)."""

    def __init__(self, path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), IN_MOVED_TO | IN_CREATE | IN_DELETE)
        assert wd >= 0, os.strerror(ctypes.get_errno())
        self.seen = []

    def wait_for(self, events, timeout=15):
        """Reads until `events` ((kind, name) pairs) were seen in this order
        among everything seen; returns all seen so far."""
        deadline = time.time() + timeout
        while not _contains_in_order(self.seen, events):
            left = deadline - time.time()
            assert left > 0, f"wanted {events}, saw {self.seen}"
            if not select.select([self.fd], [], [], left)[0]:
                continue
            buf = os.read(self.fd, 65536)
            while buf:
                _wd, mask, _cookie, size = struct.unpack_from("iIII", buf)
                name = buf[16 : 16 + size].rstrip(b"\0").decode()
                # Maildir delivery writes into tmp/ and renames into new/.
                kind = "create" if mask & (IN_CREATE | IN_MOVED_TO) else "delete"
                self.seen.append((kind, name))
                buf = buf[16 + size :]
        return self.seen

    def close(self):
        os.close(self.fd)


def _contains_in_order(seen, wanted):
    it = iter(seen)
    return all(any(s == w for s in it) for w in wanted)


NUDGE = [("create", NUDGE_FILE), ("delete", NUDGE_FILE)]


def test_every_delivery_nudges_the_inbox(relay):
    addr, other = relay.fresh_addr(), relay.fresh_addr()
    relay.imap_login(other, PASSWORD).logout()
    conn = relay.imap_login(addr, PASSWORD)
    conn.select("INBOX")  # Dovecot creates the Maildir
    conn.logout()
    new_dir = relay.mailboxes_dir / addr / "new"
    watch = Inotify(new_dir)
    try:
        # Mail from someone else: delivered (a file appears), then nudged.
        with relay.submission() as smtp:
            smtp.login(other, PASSWORD)
            smtp.sendmail(other, [addr], encrypted_message(other, addr))
        seen = watch.wait_for(NUDGE)
        mail = [i for i, (k, n) in enumerate(seen) if k == "create" and not n.startswith(".")]
        assert len(mail) == 1 and mail[0] < seen.index(("create", NUDGE_FILE)), seen
        # Mail to oneself (another device of the same account): nudged too.
        watch.seen.clear()
        with relay.submission() as smtp:
            smtp.login(addr, PASSWORD)
            smtp.sendmail(addr, [addr], encrypted_message(addr, addr))
        watch.wait_for(NUDGE)
    finally:
        watch.close()
    # The nudge file never stays, and clients never see it.
    assert not (new_dir / NUDGE_FILE).exists()
    assert len(relay.wait_for_messages(addr, PASSWORD, count=2)) == 2


def dovecot_log(relay):
    return (Path(relay.info["log_dir"]) / "dovecot.log").read_text(errors="replace")


def wait_for_log(relay, addr, needle, start, timeout=15):
    """Waits for a dovecot.log line (after offset `start`) about `addr`
    that contains `needle`."""
    deadline = time.time() + timeout
    while not any(
        f"({addr})" in line and needle in line
        for line in dovecot_log(relay)[start:].splitlines()
    ):
        assert time.time() < deadline, f"no {needle!r} for {addr} in dovecot.log"
        time.sleep(0.1)


def read_idle_update(conn):
    """The next untagged line of an IDLE that is not a keepalive. Dovecot
    spreads its "* OK Still here" over imap_idle_notify_interval by user and
    address, so the first one can come any moment after IDLE starts."""
    while (line := conn.readline()) == b"* OK Still here\r\n":
        pass
    return line


def start_idle(relay):
    """A fresh account's connection in IDLE on its INBOX, and where the
    Dovecot log stood when IDLE began."""
    addr = relay.fresh_addr()
    conn = relay.imap_login(addr, PASSWORD)
    conn.select("INBOX")
    log_start = len(dovecot_log(relay))
    conn.send(b"i1 IDLE\r\n")
    assert conn.readline().startswith(b"+ "), "IDLE refused"
    return addr, conn, log_start


def deliver_and_expect_exists(relay, conn, addr):
    """Delivers one message to `addr` over port 25 and asserts that the
    IDLE connection announces it within 15 seconds."""
    with relay.port25() as smtp:
        sender = "someone@example.net"
        smtp.sendmail(sender, [addr], encrypted_message(sender, addr))
    conn.sock.settimeout(15)
    line = read_idle_update(conn)
    assert line == b"* 1 EXISTS\r\n", line


def end_idle(conn):
    """Ends IDLE and asserts the tagged OK."""
    conn.send(b"DONE\r\n")
    while not (line := conn.readline()).startswith(b"i1 "):
        assert line.startswith(b"* "), line
    assert line.startswith(b"i1 OK"), line


def test_no_compress_is_offered(relay):
    """Delta Chat compresses whenever the server offers COMPRESS=DEFLATE,
    and Dovecot 2.4 (which offers it by default) cannot hibernate a
    compressed connection: "Couldn't export state: COMPRESS enabled without
    multiplex ostream". Neither version may offer it, before or after
    login."""
    conn = relay.imap()
    try:
        assert b"IMAP4REV1" in [c.upper().encode() for c in conn.capabilities]
        assert not [c for c in conn.capabilities if c.upper().startswith("COMPRESS")]
        conn.login(relay.fresh_addr(), PASSWORD)
        typ, data = conn.capability()
        caps = data[0].upper().split()
        assert typ == "OK" and b"XCHATMAIL" in caps and b"XDELTAPUSH" in caps, data
        assert not [c for c in caps if c.startswith(b"COMPRESS")], data
    finally:
        conn.logout()


def test_idle_connection_hibernates_and_wakes_on_mail(relay):
    addr, conn, log_start = start_idle(relay)
    # Hibernation is logged by the imap process (one debug line, see the
    # sandbox's log_debug), with the user in the log prefix; a failed
    # attempt ("Couldn't hibernate imap client") would be logged instead.
    wait_for_log(relay, addr, "Successfully hibernated", log_start)
    assert "Couldn't hibernate" not in dovecot_log(relay)[log_start:]

    deliver_and_expect_exists(relay, conn, addr)
    wait_for_log(relay, addr, "Unhibernated because mailbox changes", log_start)
    # The woken connection is a working IMAP session again.
    end_idle(conn)
    typ, data = conn.search(None, "ALL")
    assert data[0].split() == [b"1"]
    conn.logout()


def test_delivery_just_before_hibernation_is_announced(relay):
    """A delivery whose 500 ms notify delay is still pending when the
    connection hibernates (1 s after IDLE began) is not in the state the
    imap process hands over, and imap-hibernate watches the Maildir only
    from the hand-over on: without chatmail-metadata's nudge such a message
    is announced only by the next change to the mailbox (docs/latency.md).
    Each delivery here goes straight to Dovecot's LMTP (the path Postfix
    takes, push script and nudge included), timed into that window."""
    addr = relay.fresh_addr()
    conn = relay.imap_login(addr, PASSWORD)
    conn.select("INBOX")
    message = encrypted_message("someone@example.net", addr)
    lmtp_socket = str(relay.state_dir / "postfix/queue/private/dovecot-lmtp")
    log_start = len(dovecot_log(relay))
    conn.sock.settimeout(10)
    for n, offset in enumerate([0.65, 0.75, 0.85], start=1):
        conn.send(b"i1 IDLE\r\n")
        assert conn.readline().startswith(b"+ "), "IDLE refused"
        time.sleep(offset)
        lmtp = smtplib.LMTP(lmtp_socket)
        lmtp.sendmail("someone@example.net", [addr], message)
        lmtp.quit()
        delivered = time.time()
        line = read_idle_update(conn)
        assert line == b"* %d EXISTS\r\n" % n, (offset, line)
        # Announced by the 500 ms path or, after a hibernation, by the
        # nudge 600 ms after the delivery (plus a wake-up).
        assert time.time() - delivered < 3, offset
        end_idle(conn)
    # The connection did hibernate in the meantime: the window was there.
    assert f"({addr})" in dovecot_log(relay)[log_start:]
    wait_for_log(relay, addr, "Successfully hibernated", log_start)
    conn.logout()
