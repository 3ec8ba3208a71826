#!/usr/bin/env python3
"""IMAP IDLE wake-up benchmark for a chatmail sandbox relay (Python 3.11, stdlib only).

Opens --clients IMAP connections (one fresh account each) that SELECT INBOX
and IDLE, then sends --messages small cleartext messages over the relay's
port-25 listener (STARTTLS, no auth, envelope sender bench@example.net; or,
with --lmtp, straight to Dovecot's LMTP socket, since port 25 now refuses
mail without a DKIM signature) and
measures, per message, SMTP accepted (the 250 after DATA) -> "* N EXISTS" on
the recipient's IDLE connection. A message not announced within --lost-after
seconds (default 10) counts as lost.

Every client has at most one message in flight, so matching is exact. The
next message to a client is sent a "gap" after the client's reference time:
the moment it last (re)entered IDLE ("+ idling") or last received EXISTS
(Dovecot starts its imap_hibernate_timeout countdown at exactly these
moments, see docs/latency.md). Gaps are uniform in [--gap-min, --gap-max];
with --timeout-hint T a --hint-fraction of them is instead drawn uniformly
from [T - 0.8 s, T + 0.2 s], the window in which a hibernation and a
delivery race each other.

Run it as root against a running `chatmail sandbox` (it deletes
enforceE2EEincoming in the test mailboxes so cleartext passes the milter,
reads Dovecot's log and /proc). See tools/README.md and docs/latency.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import smtplib
import ssl
import statistics
import string
import sys
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

EXISTS_RE = re.compile(rb"^\* (\d+) EXISTS\r?\n?$", re.I)
EXPUNGE_RE = re.compile(rb"^\* (\d+) EXPUNGE\r?\n?$", re.I)
ALNUM = string.ascii_lowercase + string.digits


def now() -> float:
    return time.monotonic()


def rand_addr(domain: str) -> str:
    return "".join(random.choice(ALNUM) for _ in range(9)) + "@" + domain


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


# --------------------------------------------------------------------------
# /proc helpers: Dovecot processes of *this* sandbox only (children of its
# master, whose pid is in base_dir/master.pid).


def dovecot_master_pid(relay: dict) -> int | None:
    conf = Path(relay["dovecot_config"])
    for cand in (conf.parent / "run" / "master.pid",):
        try:
            return int(cand.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return None


def proc_children(master: int) -> list[tuple[int, str]]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...
        rp = stat.rfind(")")
        comm = stat[stat.find("(") + 1 : rp]
        ppid = int(stat[rp + 2 :].split()[1])
        if ppid == master:
            out.append((int(d), comm))
    return out


def mem_of(pid: int) -> tuple[int, int]:
    """(RSS kB, PSS kB) of a process, 0s if it vanished."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def imap_snapshot(master: int | None) -> dict:
    snap = {"imap": 0, "imap_hibernate": 0, "rss_kb": 0, "pss_kb": 0,
            "hibernate_rss_kb": 0, "hibernate_fds": 0}
    if master is None:
        return snap
    for pid, comm in proc_children(master):
        if comm not in ("imap", "imap-hibernate"):
            continue
        rss, pss = mem_of(pid)
        snap["rss_kb"] += rss
        snap["pss_kb"] += pss
        if comm == "imap":
            snap["imap"] += 1
        else:
            snap["imap_hibernate"] += 1
            snap["hibernate_rss_kb"] += rss
            try:
                snap["hibernate_fds"] += sum(
                    1 for fd in os.listdir(f"/proc/{pid}/fd")
                    if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"))
            except OSError:
                pass
    return snap


# --------------------------------------------------------------------------
# Dovecot log: hibernation events need
#   log_debug = event=imap_client_hibernated OR event=imap_client_unhibernated
# in local.conf (see docs/latency.md); errors are logged regardless.

LOG_PATTERNS = {
    "hibernated": "Successfully hibernated imap client",
    "unhibernated_changes": "Unhibernated because mailbox changes need to be sent",
    "unhibernated_done": "Unhibernated because IDLE was stopped with DONE",
    "hibernate_failed": "Couldn't hibernate imap client",
    "unhibernate_failed": "Failed to unhibernate client",
    "inotify_limit": "Inotify instance limit",
    "errors": ": Error: ",
    "fatal": ": Fatal: ",
}


def log_counts(path: Path, offset: int) -> tuple[dict, list[str]]:
    counts = {k: 0 for k in LOG_PATTERNS}
    samples: list[str] = []
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            for raw in f:
                line = raw.decode("utf-8", "replace")
                for k, pat in LOG_PATTERNS.items():
                    if pat in line:
                        counts[k] += 1
                        if k in ("hibernate_failed", "unhibernate_failed", "inotify_limit",
                                 "errors", "fatal") and len(samples) < 8:
                            samples.append(line.strip()[:300])
    except OSError:
        pass
    return counts, samples


# --------------------------------------------------------------------------
# IMAP client


@dataclass
class Pending:
    msg_id: int
    t_send: float
    t_accept: float = 0.0
    gap: float = 0.0
    hinted: bool = False
    lost_flagged: bool = False


@dataclass
class Client:
    addr: str
    password: str
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    exists: int = 0
    tagn: int = 0
    ref_time: float = 0.0            # last "+ idling" or EXISTS
    idling: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    tagged: dict = field(default_factory=dict)   # tag -> future
    pending: list = field(default_factory=list)  # [Pending] FIFO
    idle_tag: str | None = None
    closed: bool = False
    busy: bool = False               # between DONE and the next "+ idling"


class Bench:
    def __init__(self, args, relay: dict):
        self.a = args
        self.relay = relay
        self.records: list[dict] = []
        self.lost = 0
        self.late = 0
        self.sent = 0
        self.msg_seq = 0
        self.budget = args.messages
        self.smtp_pool: asyncio.Queue = asyncio.Queue()
        self.sslctx = ssl.create_default_context()
        self.sslctx.check_hostname = False
        self.sslctx.verify_mode = ssl.CERT_NONE
        self.max_hibernated_seen = 0
        self.stop = False
        self.disconnects = 0
        self.nudge_ms = [int(x) for x in args.nudge_ms.split(",")] if args.nudge_ms else []
        self.nudge_delivery_ms = ([int(x) for x in args.nudge_after_delivery_ms.split(",")]
                                  if args.nudge_after_delivery_ms else [])
        self.delivery_delays: list[float] = []
        self.nudges_done = 0
        self.nudges_skipped = 0
        self.mbox_dir = Path(relay["mailboxes_dir"])

    # ---- IMAP ------------------------------------------------------------
    async def imap_connect(self, c: Client) -> None:
        host = self.relay["host"]
        c.reader, c.writer = await asyncio.open_connection(
            host, self.relay["imaps_port"], ssl=self.sslctx, limit=1 << 20)
        greet = await c.reader.readline()
        if not greet.startswith(b"* OK"):
            raise RuntimeError(f"bad greeting {greet!r}")
        asyncio.create_task(self.imap_reader(c))
        ok = await self.cmd(c, f'LOGIN "{c.addr}" "{c.password}"')
        if not ok.startswith("OK"):
            raise RuntimeError(f"LOGIN {c.addr}: {ok}")
        ok = await self.cmd(c, "SELECT INBOX")
        if not ok.startswith("OK"):
            raise RuntimeError(f"SELECT: {ok}")
        if self.a.notify:
            # RFC 5465 NOTIFY for the selected mailbox (Dovecot then refuses
            # to hibernate: imap-state.c "NOTIFY not supported currently").
            ok = await self.cmd(c, "NOTIFY SET (SELECTED (MessageNew (UID) MessageExpunge))")
            if not ok.startswith("OK"):
                raise RuntimeError(f"NOTIFY: {ok}")
        await self.start_idle(c)

    def next_tag(self, c: Client) -> str:
        c.tagn += 1
        return f"b{c.tagn}"

    async def cmd(self, c: Client, line: str) -> str:
        tag = self.next_tag(c)
        fut = asyncio.get_running_loop().create_future()
        c.tagged[tag] = fut
        c.writer.write(f"{tag} {line}\r\n".encode())
        await c.writer.drain()
        return await asyncio.wait_for(fut, 60)

    async def start_idle(self, c: Client) -> None:
        c.idling.clear()
        tag = self.next_tag(c)
        c.idle_tag = tag
        c.tagged[tag] = asyncio.get_running_loop().create_future()
        c.writer.write(f"{tag} IDLE\r\n".encode())
        await c.writer.drain()
        await asyncio.wait_for(c.idling.wait(), 60)

    async def stop_idle(self, c: Client) -> None:
        tag = c.idle_tag
        fut = c.tagged[tag]
        c.writer.write(b"DONE\r\n")
        await c.writer.drain()
        await asyncio.wait_for(fut, 60)

    async def imap_reader(self, c: Client) -> None:
        try:
            while True:
                line = await c.reader.readline()
                t = now()
                if not line:
                    break
                m = EXISTS_RE.match(line)
                if m:
                    n = int(m.group(1))
                    new = n - c.exists
                    c.exists = n
                    c.ref_time = t
                    if new > 0:
                        self.on_arrival(c, new, t)
                    continue
                m = EXPUNGE_RE.match(line)
                if m:
                    c.exists -= 1
                    continue
                if line.startswith(b"+"):
                    c.ref_time = t
                    c.idling.set()
                    continue
                if line.startswith(b"*"):
                    continue
                tag, _, rest = line.decode("utf-8", "replace").partition(" ")
                fut = c.tagged.pop(tag, None)
                if fut is not None and not fut.done():
                    fut.set_result(rest.strip())
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        c.closed = True
        if not self.stop:
            self.disconnects += 1
            print(f"!! {c.addr}: IMAP connection closed by server", file=sys.stderr)
        for fut in c.tagged.values():
            if not fut.done():
                fut.set_exception(ConnectionError("closed"))
        c.idling.set()
        c.arrived.set()

    def on_arrival(self, c: Client, new: int, t: float) -> None:
        for _ in range(new):
            if not c.pending:
                print(f"!! {c.addr}: unexpected EXISTS", file=sys.stderr)
                break
            p = c.pending.pop(0)
            # t_accept is 0 only if the thread has not stored it yet (the
            # announcement raced the 250): count from the send instead.
            lat = t - (p.t_accept or p.t_send)
            rec = {"id": p.msg_id, "client": c.addr, "gap": round(p.gap, 4),
                   "hinted": p.hinted, "latency": round(lat, 4),
                   "from_send": round(t - p.t_send, 4),
                   "lost": p.lost_flagged or lat > self.a.lost_after}
            if p.lost_flagged:
                self.late += 1
            self.records.append(rec)
        c.arrived.set()

    # ---- SMTP --------------------------------------------------------------
    def smtp_open(self) -> smtplib.SMTP:
        if self.a.lmtp:
            # Straight into Dovecot: LMTP with the push script and the nudge,
            # no Postfix (whose port 25 refuses mail without a DKIM signature).
            return smtplib.LMTP(self.a.lmtp, timeout=60)
        s = smtplib.SMTP(self.relay["host"], self.relay["smtp_port"], timeout=60)
        s.ehlo("bench.example.net")
        s.starttls(context=self.sslctx)
        s.ehlo("bench.example.net")
        return s

    def smtp_send_blocking(self, s: smtplib.SMTP | None, to: str, p: Pending):
        msg_id = p.msg_id
        body = (
            f"From: <bench@example.net>\r\nTo: <{to}>\r\n"
            f"Subject: bench {msg_id}\r\nDate: {formatdate()}\r\n"
            f"Message-ID: <{uuid.uuid4()}@example.net>\r\n\r\n"
            f"bench message {msg_id}\r\n"
        )
        for attempt in range(3):
            try:
                if s is None:
                    s = self.smtp_open()
                p.t_send = now()
                s.sendmail("bench@example.net", [to], body)
                # Set here, not after the await: the EXISTS can be read by the
                # event loop before the coroutine that sent the mail resumes.
                p.t_accept = now()
                return s
            except (smtplib.SMTPException, OSError) as e:
                if attempt == 2:
                    raise
                print(f"!! smtp retry ({e})", file=sys.stderr)
                try:
                    if s is not None:
                        s.close()
                except Exception:
                    pass
                s = None
        raise RuntimeError("unreachable")

    async def send(self, to: str, p: Pending) -> None:
        s = await self.smtp_pool.get()
        try:
            s = await asyncio.to_thread(self.smtp_send_blocking, s, to, p)
        finally:
            self.smtp_pool.put_nowait(s)

    def nudge(self, addr: str) -> None:
        d = self.mbox_dir / addr / "new"
        p = d / f".nudge-{uuid.uuid4().hex[:8]}"
        try:
            fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
            os.unlink(p)
        except OSError as e:
            print(f"!! nudge {p}: {e}", file=sys.stderr)

    def new_files(self, addr: str) -> set:
        try:
            return {n for n in os.listdir(self.mbox_dir / addr / "new") if n[0] != "."}
        except OSError:
            return set()

    async def nudge_after_delivery(self, c: Client, p: Pending, before: set) -> None:
        """Emulate a helper that runs at delivery time (e.g. chatmail-metadata on
        the messagenew dict write): poll the recipient's new/ every 20 ms for
        the message file (or its announcement, if Dovecot moved it to cur/
        first), then nudge --nudge-after-delivery-ms later."""
        loop = asyncio.get_running_loop()
        end = now() + 30.0
        t_d = None
        while now() < end and not self.stop:
            if p not in c.pending or (self.new_files(c.addr) - before):
                t_d = now()
                break
            await asyncio.sleep(0.02)
        if t_d is None:
            return
        self.delivery_delays.append(t_d - p.t_accept)
        for ms in self.nudge_delivery_ms:
            loop.call_later(max(0.0, t_d + ms / 1000.0 - now()), self.nudge_if, c.addr)

    def nudge_if(self, addr: str) -> None:
        """--nudge-only-if-new: Dovecot moves a message from new/ to cur/ when an
        IMAP session (SELECT, not EXAMINE) syncs it, i.e. when it announces it.
        A file still in new/ after the nudge delay means the announcement has
        not happened: only then is a nudge needed."""
        if self.a.nudge_only_if_new and not self.new_files(addr):
            self.nudges_skipped += 1
            return
        self.nudges_done += 1
        self.nudge(addr)

    # ---- per-client driver ---------------------------------------------------
    def choose_gap(self) -> tuple[float, bool]:
        a = self.a
        if a.timeout_hint is not None and random.random() < a.hint_fraction:
            return random.uniform(max(0.0, a.timeout_hint - 0.8), a.timeout_hint + 0.2), True
        return random.uniform(a.gap_min, a.gap_max), False

    async def drive(self, c: Client) -> None:
        loop = asyncio.get_running_loop()
        # Spread the first messages: all clients start together, and a burst
        # of --clients messages would measure Postfix's queue, not IDLE.
        await asyncio.sleep(random.uniform(0, self.a.gap_max))
        while not self.stop and not c.closed:
            if self.budget <= 0:
                return
            self.budget -= 1
            gap, hinted = self.choose_gap()
            wait = c.ref_time + gap - now()
            if wait > 0:
                await asyncio.sleep(wait)
            if c.closed:
                return
            self.msg_seq += 1
            p = Pending(self.msg_seq, 0.0, gap=now() - c.ref_time, hinted=hinted)
            c.arrived.clear()
            c.pending.append(p)
            before = self.new_files(c.addr) if self.nudge_delivery_ms else None
            await self.send(c.addr, p)
            self.sent += 1
            for ms in self.nudge_ms:
                loop.call_later(ms / 1000.0, self.nudge, c.addr)
            if self.nudge_delivery_ms:
                asyncio.create_task(self.nudge_after_delivery(c, p, before))
            deadline = p.t_accept + self.a.lost_after
            while p in c.pending and not c.closed:
                left = deadline - now()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(c.arrived.wait(), left)
                except asyncio.TimeoutError:
                    break
                c.arrived.clear()
            if p in c.pending:
                p.lost_flagged = True
                self.lost += 1
                print(f"!! lost: msg {p.msg_id} to {c.addr} (gap {p.gap:.3f}s)",
                      file=sys.stderr)
                # Keep the client: a later message may wake it (and then
                # announce this one late). Its reference time stays as is.
                continue
            if self.a.mode in ("fetch", "delete"):
                await self.after_arrival(c)

    async def after_arrival(self, c: Client) -> None:
        """What Delta Chat does on a wake-up: DONE, fetch, (delete), IDLE."""
        await self.stop_idle(c)
        if c.exists > 0:
            await self.cmd(c, f"FETCH {c.exists} (UID FLAGS)")
        if self.a.mode == "delete" and c.exists > 0:
            await self.cmd(c, "STORE 1:* +FLAGS.SILENT (\\Deleted)")
            await self.cmd(c, "EXPUNGE")
        await self.start_idle(c)

    async def sampler(self) -> None:
        master = dovecot_master_pid(self.relay)
        while not self.stop:
            snap = await asyncio.to_thread(imap_snapshot, master)
            self.max_hibernated_seen = max(self.max_hibernated_seen,
                                           self.a.clients - snap["imap"])
            await asyncio.sleep(1.0)

    # ---- main ------------------------------------------------------------------
    async def run(self) -> dict:
        a = self.a
        relay = self.relay
        master = dovecot_master_pid(relay)
        log_path = Path(relay["log_dir"]) / "dovecot.log"
        for _ in range(a.smtp_conns):
            self.smtp_pool.put_nowait(None)
        log_off = log_path.stat().st_size if log_path.exists() else 0

        clients = [Client(rand_addr(relay["domain"]),
                          "".join(random.choice(ALNUM) for _ in range(16)))
                   for _ in range(a.clients)]
        t_start = now()
        sem = asyncio.Semaphore(20)

        async def setup(c: Client):
            async with sem:
                await self.imap_connect(c)
                e2ee = self.mbox_dir / c.addr / "enforceE2EEincoming"
                try:
                    e2ee.unlink()
                except FileNotFoundError:
                    pass

        await asyncio.gather(*(setup(c) for c in clients))
        print(f"# {len(clients)} clients in IDLE after {now() - t_start:.1f}s", file=sys.stderr)

        mem = {}
        if a.hibernate_timeout is not None:
            # All clients just entered IDLE: measure before and after the
            # hibernation timeout (and the imap processes' exit) has passed.
            await asyncio.sleep(0.3)
            mem["before_timeout"] = imap_snapshot(master)
            await asyncio.sleep(a.hibernate_timeout + 3.0)
            mem["after_timeout"] = imap_snapshot(master)
            print(f"# memory: {json.dumps(mem)}", file=sys.stderr)

        samp = asyncio.create_task(self.sampler())
        t_traffic = now()

        async def progress():
            while not self.stop:
                await asyncio.sleep(15)
                print(f"# t={now() - t_traffic:.0f}s sent={self.sent} "
                      f"announced={len(self.records)} lost={self.lost}", file=sys.stderr)

        prog = asyncio.create_task(progress())
        drivers = [asyncio.create_task(self.drive(c)) for c in clients]
        try:
            await asyncio.wait_for(asyncio.gather(*drivers), a.max_seconds)
        except asyncio.TimeoutError:
            print("# --max-seconds reached, stopping", file=sys.stderr)
        t_end = now()
        # Messages whose wait was cut short by --max-seconds are not counted
        # as lost unless their deadline passed.
        unresolved = sum(1 for c in clients for p in c.pending
                         if not p.lost_flagged and now() - p.t_accept > a.lost_after)
        self.lost += unresolved

        if a.hibernate_timeout is not None:
            await asyncio.sleep(a.hibernate_timeout + 3.0)
            mem["end_idle"] = imap_snapshot(master)
        self.stop = True
        samp.cancel()
        prog.cancel()
        counts, samples = log_counts(log_path, log_off)

        for c in clients:
            if c.writer is not None and not c.closed:
                try:
                    c.writer.write(b"DONE\r\nz LOGOUT\r\n")
                    c.writer.close()
                except Exception:
                    pass
        while not self.smtp_pool.empty():
            s = self.smtp_pool.get_nowait()
            if s is not None:
                try:
                    s.quit()
                except Exception:
                    pass

        ok = [r["latency"] for r in self.records if not r["lost"]]
        ok_send = [r["from_send"] for r in self.records if not r["lost"]]
        res = {
            "label": a.label,
            "clients": a.clients,
            "mode": a.mode,
            "timeout_hint": a.timeout_hint,
            "nudge_ms": self.nudge_ms,
            "nudge_after_delivery_ms": self.nudge_delivery_ms,
            "nudge_only_if_new": self.a.nudge_only_if_new,
            "nudges_done": self.nudges_done,
            "nudges_skipped": self.nudges_skipped,
            "accept_to_delivery_ms": {
                "p50": round(pct(self.delivery_delays, 50) * 1000, 1),
                "p99": round(pct(self.delivery_delays, 99) * 1000, 1),
                "max": round(max(self.delivery_delays) * 1000, 1),
            } if self.delivery_delays else None,
            "messages_sent": self.sent,
            "announced_in_time": len(ok),
            "lost": self.lost,
            "late_announced": self.late,
            "disconnects": self.disconnects,
            "traffic_seconds": round(t_end - t_traffic, 1),
            "latency_ms": {
                "p50": round(pct(ok, 50) * 1000, 1),
                "p90": round(pct(ok, 90) * 1000, 1),
                "p99": round(pct(ok, 99) * 1000, 1),
                "max": round(max(ok) * 1000, 1) if ok else None,
                "mean": round(statistics.fmean(ok) * 1000, 1) if ok else None,
            },
            # From before MAIL FROM (milter and policy included) to EXISTS.
            "from_send_ms": {
                "p50": round(pct(ok_send, 50) * 1000, 1),
                "p90": round(pct(ok_send, 90) * 1000, 1),
                "p99": round(pct(ok_send, 99) * 1000, 1),
                "max": round(max(ok_send) * 1000, 1) if ok_send else None,
            },
            "fast_path_share_lt_300ms": round(sum(1 for x in ok if x < 0.3) / len(ok), 3)
            if ok else None,
            "dovecot_log": counts,
            "dovecot_log_samples": samples,
            "max_connections_hibernated_at_once": self.max_hibernated_seen,
            "memory": mem,
        }
        if a.timeout_hint is not None:
            # Latency by gap relative to the hint (the hibernate timeout).
            T = a.timeout_hint
            buckets = {"gap<T-0.6": [], "T-0.6<=gap<T": [], "gap>=T": []}
            lost_b = {k: 0 for k in buckets}
            never = [{"gap": p.gap, "lost": True} for c in clients for p in c.pending]
            for r in self.records + never:
                k = ("gap<T-0.6" if r["gap"] < T - 0.6 else
                     "T-0.6<=gap<T" if r["gap"] < T else "gap>=T")
                if r["lost"]:
                    lost_b[k] += 1
                else:
                    buckets[k].append(r["latency"])
            res["by_gap"] = {
                k: {"n": len(v) + lost_b[k], "lost": lost_b[k],
                    "p50": round(pct(v, 50) * 1000, 1), "p90": round(pct(v, 90) * 1000, 1),
                    "max": round(max(v) * 1000, 1) if v else None}
                for k, v in buckets.items()}
        if a.records:
            with open(a.records, "w") as f:
                for r in self.records:
                    f.write(json.dumps(r) + "\n")
                for c in clients:
                    for p in c.pending:
                        f.write(json.dumps({"id": p.msg_id, "client": c.addr,
                                            "gap": round(p.gap, 4), "hinted": p.hinted,
                                            "latency": None, "lost": True}) + "\n")
        return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--relay-json", required=True, help="DIR/relay.json of a running sandbox")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--gap-min", type=float, default=0.2, help="seconds (default 0.2)")
    ap.add_argument("--gap-max", type=float, default=8.0, help="seconds (default 8)")
    ap.add_argument("--timeout-hint", type=float, default=None,
                    help="imap_hibernate_timeout in seconds: bias gaps to [T-0.8, T+0.2]")
    ap.add_argument("--hint-fraction", type=float, default=0.5,
                    help="share of gaps drawn around --timeout-hint (default 0.5)")
    ap.add_argument("--hibernate-timeout", type=float, default=None,
                    help="measure RSS before/after this timeout once all clients idle "
                         "(defaults to --timeout-hint)")
    ap.add_argument("--mode", choices=["stay", "fetch", "delete"], default="fetch",
                    help="after EXISTS: stay in IDLE, or DONE+FETCH(+delete)+IDLE like "
                         "Delta Chat (default fetch)")
    ap.add_argument("--smtp-conns", type=int, default=4)
    ap.add_argument("--lmtp", metavar="SOCKET",
                    help="deliver over this LMTP socket (the sandbox's "
                    "STATE/postfix/queue/private/dovecot-lmtp) instead of port 25; "
                    "latency then runs from the LMTP 250")
    ap.add_argument("--lost-after", type=float, default=10.0)
    ap.add_argument("--max-seconds", type=float, default=540.0,
                    help="stop sending after this long (default 540)")
    ap.add_argument("--nudge-ms", default="",
                    help="emulate a delivery helper: create+unlink a dotfile in the "
                         "recipient's new/ this many ms after SMTP accept (comma list)")
    ap.add_argument("--nudge-after-delivery-ms", default="",
                    help="like --nudge-ms, but counted from the delivery (the message "
                         "file appearing in new/, polled every 20 ms): emulates a "
                         "helper triggered at delivery")
    ap.add_argument("--nudge-only-if-new", action="store_true",
                    help="with --nudge-after-delivery-ms: nudge only if new/ still "
                         "holds a message (i.e. no session has announced it yet)")
    ap.add_argument("--notify", action="store_true",
                    help="send NOTIFY SET (SELECTED ...) before IDLE (RFC 5465)")
    ap.add_argument("--label", default="")
    ap.add_argument("--records", help="write one JSON line per message here")
    ap.add_argument("--json", help="write the summary JSON here too")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    if a.hibernate_timeout is None:
        a.hibernate_timeout = a.timeout_hint
    if a.seed is not None:
        random.seed(a.seed)
    relay = json.loads(Path(a.relay_json).read_text())
    res = asyncio.run(Bench(a, relay).run())
    out = json.dumps(res, indent=2)
    print(out)
    if a.json:
        Path(a.json).write_text(out + "\n")


if __name__ == "__main__":
    main()
