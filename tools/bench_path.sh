#!/usr/bin/env bash
# The helpers' share of delivery latency: SMTP send -> `* N EXISTS` on an
# IMAP IDLE connection (tools/bench_idle.py, 10 clients, one message in
# flight each), on one `chatmail sandbox`, three ways:
#
#   full-off   every helper in the mail path, hibernation off: the Dovecot
#              settings of the reference chatmail relay;
#   bare-off   the same Postfix and Dovecot without the helpers in the mail
#              path (no milter, no policy service, no Lua push script and so
#              no metadata write and no nudge): what stock Postfix + Dovecot
#              cost. Logins and LMTP's userdb lookup still go to chatmail
#              auth, as they must for the mailboxes to exist;
#   shipped    every helper, the shipped settings (imap_hibernate_timeout = 1s
#              with the post-delivery nudge).
#
# Usage (root, from the repository, after cargo build --bin chatmail):
#   tools/bench_path.sh [MESSAGES]      (default 300 per way)
# Prints one line per way: p50 / p90 / p99 from before MAIL FROM to EXISTS,
# and p50 from the 250 after DATA to EXISTS.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
bin=${CHATMAIL_BIN:-target/debug/chatmail}
D=$(mktemp -d /tmp/bench-path-XXXX)
chmod 755 "$D"
mkdir -p "$D/etc" "$D/dovecot"
cat >"$D/etc/chatmail.ini" <<INI
[params]
mail_domain = chat.localhost
mailboxes_dir = $D/mail/chat.localhost
nocreate_file = $D/chatmail-nocreate
max_load_1m = 1000
INI
pid=
stop() {
	if [ -n "$pid" ]; then
		kill -INT "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=
	fi
}
trap 'stop; rm -rf "$D"' EXIT
start() {
	rm -f "$D/relay.json"
	"$bin" sandbox --state-dir "$D" >>"$D/sandbox.out" 2>&1 &
	pid=$!
	for _ in $(seq 600); do
		[ -e "$D/relay.json" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	cat "$D/sandbox.out" >&2
	echo "bench_path: the sandbox did not start" >&2
	exit 1
}
bench() {  # $1 = label, rest: extra bench_idle options
	local label=$1
	shift
	python3 tools/bench_idle.py --relay-json "$D/relay.json" --clients 10 \
		--messages "$n" --gap-min 1 --gap-max 3 --label "$label" \
		--json "$D/$label.json" "$@" >"$D/$label.out" 2>&1 ||
		{ cat "$D/$label.out" >&2; exit 1; }
	python3 - "$D/$label.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, a = r["from_send_ms"], r["latency_ms"]
print(f'{r["label"]:9} {r["messages_sent"]:5} msgs  lost {r["lost"]}  send->EXISTS '
      f'p50 {s["p50"]:6.1f}  p90 {s["p90"]:6.1f}  p99 {s["p99"]:6.1f} ms   '
      f'250->EXISTS p50 {a["p50"]:6.1f} ms')
PY
}

milters() { postconf -c "$pf" -h smtpd_milters; }
pf="$D/postfix/etc"
echo "imap_hibernate_timeout = 0" >"$D/dovecot/local.conf"
start
[ -n "$(milters)" ] || { echo "bench_path: no milter in the full setup" >&2; exit 1; }
bench full-off
# Take the helpers out of the mail path of the running instance.
postconf -c "$pf" -e 'smtpd_milters =' 'smtpd_recipient_restrictions =' 'smtpd_data_restrictions ='
postfix -c "$pf" reload >/dev/null 2>&1
printf 'protocol lmtp {\n  mail_plugins = quota\n}\n' >>"$D/dovecot/local.conf"
doveadm -c "$D/dovecot/dovecot.conf" reload
sleep 2
bench bare-off
stop
# A restart rewrites Postfix's and Dovecot's configuration from the snippets.
: >"$D/dovecot/local.conf"
start
[ -n "$(milters)" ] || { echo "bench_path: the restart kept the bare setup" >&2; exit 1; }
bench shipped --timeout-hint 1 --hint-fraction 0.3
