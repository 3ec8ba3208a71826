//! Mail that may pass unencrypted, and its look-alikes: Secure-Join
//! requests, delivery status notifications, Autocrypt Setup Messages sent
//! to oneself, and the variants of each that smuggle cleartext.

use super::Expect::{self, Accept, Reject};
use super::material::Material;
use super::wire::{Crc, armor};
use super::{BOUNDARY, Cases, SECRET, edit, headers, insert_after};

/// Secure-Join requests, real and fake.
pub(super) fn securejoin_cases(c: &mut Cases<'_>) {
    for (name, header, text, expect) in [
        (
            "securejoin-vc-request",
            "vc-request",
            "Secure-Join: vc-request",
            Accept,
        ),
        (
            "securejoin-vg-request",
            "vg-request",
            "Secure-Join: vg-request",
            Accept,
        ),
        ("securejoin-fake-body", "vc-request", SECRET, Reject),
        (
            "securejoin-vc-request-with-auth-cleartext",
            "vc-request-with-auth",
            "Secure-Join: vc-request-with-auth",
            Reject,
        ),
    ] {
        c.add(name, c.securejoin(header, text), expect, expect);
    }
}

/// Delivery status notifications, with and without the null sender.
pub(super) fn bounce_cases(c: &mut Cases<'_>) {
    let domain = c.from.rsplit_once('@').map_or("example.org", |d| d.1);
    let daemon = format!("MAILER-DAEMON@{domain}");
    let report = format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n \
         boundary=\"{BOUNDARY}\"\r\n\r\n--{BOUNDARY}\r\n\
         Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
         --{BOUNDARY}\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; {domain}\r\n\r\nFinal-Recipient: rfc822; {}\r\n\
         Action: failed\r\nStatus: 5.1.1\r\n\r\n--{BOUNDARY}--\r\n",
        c.to.first().map_or("x@example.org", |s| s.as_str())
    );
    let bounce = headers(
        &daemon,
        c.to,
        "Undelivered Mail Returned to Sender",
        &[("Auto-Submitted", "auto-replied")],
    ) + &report;
    c.add("bounce-with-sender", bounce.clone(), Reject, Reject);
    // A bounce whose report another parser reads as plain text.
    let ambiguous_bounce = edit(
        &bounce,
        "Content-Type: multipart/report;",
        "Content-Type: text/plain\r\nContent-Type: multipart/report;",
    );
    for (name, raw, incoming) in [
        ("bounce-null-sender", bounce, Accept),
        ("bounce-dup-content-type", ambiguous_bounce, Reject),
    ] {
        let to = c.to.to_vec();
        c.add_sent(name, String::new(), to, raw, Reject, incoming);
    }
}

/// Autocrypt Setup Messages, sent to oneself or not, and hostile variants.
pub(super) fn autocrypt_setup_cases(c: &mut Cases<'_>, m: &Material) {
    let body = format!(
        "Autocrypt-Setup-Message: v1\r\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n\
         --{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nThis is the Autocrypt Setup Message.\r\n\
         --{BOUNDARY}\r\nContent-Type: application/autocrypt-setup\r\n\
         Content-Disposition: attachment; filename=\"autocrypt-setup-message.html\"\r\n\r\n\
         <html><body><pre>\r\n{}</pre></body></html>\r\n--{BOUNDARY}--\r\n",
        armor(
            &m.setup_secret,
            &[("Passphrase-Format", "numeric9x4")],
            Crc::Correct
        )
    );
    let subject = "Autocrypt Setup Message";
    let me = vec![c.from.to_owned()];
    let to_self = headers(c.from, &me, subject, &[]) + &body;
    let to_other = headers(c.from, c.to, subject, &[]) + &body;
    let add_self = |c: &mut Cases<'_>, name: &str, raw: String, outgoing| {
        let from = c.from.to_owned();
        c.add_sent(name, from, me.clone(), raw, outgoing, Reject);
    };
    add_self(c, "autocrypt-setup-self", to_self.clone(), Accept);
    c.add("autocrypt-setup-to-other", to_other, Reject, Reject);
    for (name, raw, outgoing) in asm_cases(&to_self) {
        add_self(c, &name, raw, outgoing);
    }
}

/// Variants of the self-sent Autocrypt Setup Message `asm`: `(name, raw,
/// outgoing)`; none is accepted incoming.
fn asm_cases(asm: &str) -> Vec<(String, String, Expect)> {
    let b = BOUNDARY;
    let close = format!("--{b}--\r\n");
    let extra = format!("--{b}\r\nContent-Type: text/plain\r\n\r\n{SECRET}\r\n{close}");
    vec![
        (
            "autocrypt-setup-epilogue-cleartext",
            insert_after(asm, &close, &format!("{SECRET}\r\n")),
            Reject,
        ),
        (
            "autocrypt-setup-preamble-cleartext",
            edit(
                asm,
                &format!("\r\n\r\n--{b}\r\n"),
                &format!("\r\n\r\n{SECRET}\r\n--{b}\r\n"),
            ),
            Reject,
        ),
        (
            "autocrypt-setup-third-part",
            edit(asm, &close, &extra),
            Reject,
        ),
        (
            "autocrypt-setup-no-armor",
            edit(
                asm,
                "-----BEGIN PGP MESSAGE-----",
                "-----BEGIN PGP NOTHING-----",
            ),
            Reject,
        ),
        (
            "autocrypt-setup-cleartext-in-attachment",
            edit(asm, "</pre>", &format!("</pre>{}", SECRET.repeat(1000))),
            Reject,
        ),
        (
            "autocrypt-setup-long-text-part",
            edit(
                asm,
                "This is the Autocrypt Setup Message.",
                &SECRET.repeat(1000),
            ),
            Reject,
        ),
    ]
    .into_iter()
    .map(|(n, raw, e)| (n.to_owned(), raw, e))
    .collect()
}
