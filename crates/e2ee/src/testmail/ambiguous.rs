//! Messages whose MIME structure parsers read differently (repeated
//! header fields, odd delimiters, parameters written two ways) or that
//! carry cleartext outside their parts, built from a real encrypted
//! message and a real Secure-Join request.

use super::Expect::{self, Accept, Reject};
use super::{BOUNDARY, SECRET, edit, insert_after, insert_before};

/// Variants of the real encrypted message `good` and the Secure-Join
/// request `sj` whose MIME structure is ambiguous (parsers disagree on it)
/// or that carry cleartext outside the parts. `(name, raw, outgoing,
/// incoming)`.
pub(super) fn structure_cases(good: &str, sj: &str) -> Vec<(String, String, Expect, Expect)> {
    let b = BOUNDARY;
    let top_ct = "Content-Type: multipart/encrypted;";
    let control_ct = "Content-Type: application/pgp-encrypted\r\n";
    let payload_ct = "Content-Type: application/octet-stream;";
    let preamble = "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n";
    let close = format!("\r\n--{b}--\r\n");
    let mut v: Vec<(&str, String, Expect)> = vec![
        // Accepted shapes real writers produce.
        ("structure-preamble-empty", edit(good, preamble, ""), Accept),
        (
            "structure-preamble-rfc2440",
            edit(good, "RFC 4880 and 3156", "RFC 2440 and 3156"),
            Accept,
        ),
        (
            "structure-epilogue-blank-lines",
            insert_after(good, &close, "\r\n\r\n"),
            Accept,
        ),
        (
            "structure-cte-7bit-on-multipart",
            insert_before(good, top_ct, "Content-Transfer-Encoding: 7bit\r\n"),
            Accept,
        ),
        // Repeated MIME header fields, at the top and in each part.
        (
            "dup-content-type-plain-first",
            insert_before(good, top_ct, "Content-Type: text/plain\r\n"),
            Reject,
        ),
        (
            "dup-content-type-plain-last",
            edit(
                good,
                &format!("boundary=\"{b}\"\r\n"),
                &format!("boundary=\"{b}\"\r\nContent-Type: text/plain\r\n"),
            ),
            Reject,
        ),
        (
            "dup-content-type-same-twice",
            insert_before(
                good,
                top_ct,
                &format!(
                    "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"{b}\"\r\n"
                ),
            ),
            Reject,
        ),
        (
            "dup-content-transfer-encoding-top",
            insert_before(
                good,
                top_ct,
                "Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n",
            ),
            Reject,
        ),
        (
            "dup-mime-version-top",
            edit(
                good,
                "MIME-Version: 1.0\r\n",
                "MIME-Version: 1.0\r\nMIME-Version: 1.0\r\n",
            ),
            Reject,
        ),
        (
            "dup-content-type-control-part",
            insert_before(good, control_ct, "Content-Type: text/plain\r\n"),
            Reject,
        ),
        (
            "dup-content-type-payload-part",
            insert_before(good, payload_ct, "Content-Type: text/plain\r\n"),
            Reject,
        ),
        (
            "dup-content-transfer-encoding-payload-part",
            insert_before(
                good,
                payload_ct,
                "Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n",
            ),
            Reject,
        ),
        (
            "dup-mime-version-payload-part",
            insert_before(
                good,
                payload_ct,
                "MIME-Version: 1.0\r\nMIME-Version: 1.0\r\n",
            ),
            Reject,
        ),
        (
            "cte-base64-on-multipart",
            insert_before(good, top_ct, "Content-Transfer-Encoding: base64\r\n"),
            Reject,
        ),
        (
            "cte-quoted-printable-on-multipart",
            insert_before(
                good,
                top_ct,
                "Content-Transfer-Encoding: quoted-printable\r\n",
            ),
            Reject,
        ),
        // Header syntax that parsers read differently.
        (
            "header-space-before-colon",
            insert_before(good, top_ct, "Content-Type : text/plain\r\n"),
            Reject,
        ),
        // Postfix turns a bare CR in a header into a space, but passes it
        // on in the body, where Python's parser ends a line at it: here it
        // sees a cleartext part before the two encrypted ones.
        (
            "bare-cr-before-delimiter",
            edit(
                good,
                preamble,
                &format!("x\r--{b}\r\nContent-Type: text/plain\r\n\r\n{SECRET}\r\n"),
            ),
            Reject,
        ),
        (
            "header-whitespace-line",
            insert_before(good, top_ct, "X-Note: a\r\n \r\n"),
            Reject,
        ),
        (
            "content-type-duplicate-boundary",
            edit(
                good,
                &format!("boundary=\"{b}\""),
                &format!("boundary=\"{b}\"; boundary=\"other\""),
            ),
            Reject,
        ),
        (
            "content-type-rfc2231-boundary",
            edit(
                good,
                &format!("boundary=\"{b}\""),
                &format!("boundary*0=\"{b}\""),
            ),
            Reject,
        ),
        (
            "content-type-comment",
            edit(
                good,
                "multipart/encrypted;",
                "multipart/encrypted (text/plain);",
            ),
            Reject,
        ),
        // Delimiter lines.
        (
            "boundary-with-trailing-text",
            edit(
                good,
                &format!("--{b}\r\nContent-Type: application/pgp-encrypted"),
                &format!("--{b}x\r\nContent-Type: application/pgp-encrypted"),
            ),
            Reject,
        ),
        ("no-close-delimiter", edit(good, &close, "\r\n"), Reject),
        (
            "text-after-close-delimiter",
            edit(good, &close, &format!("\r\n--{b}-- {SECRET}\r\n")),
            Reject,
        ),
        // Cleartext around the parts.
        (
            "preamble-cleartext",
            edit(good, preamble, &format!("{SECRET}\r\n")),
            Reject,
        ),
        (
            "preamble-known-line-then-cleartext",
            insert_after(good, preamble, &format!("{SECRET}\r\n")),
            Reject,
        ),
        (
            "preamble-known-line-twice",
            edit(good, preamble, &format!("{preamble}{preamble}")),
            Reject,
        ),
        (
            "preamble-oversized-whitespace",
            edit(good, preamble, &" \r\n".repeat(1000)),
            Reject,
        ),
        (
            "epilogue-cleartext",
            insert_after(good, &close, &format!("{SECRET}\r\n")),
            Reject,
        ),
        (
            "epilogue-one-megabyte",
            edit(
                good,
                &close,
                &format!("{close}{}", format!("{SECRET}\r\n").repeat(60_000)),
            ),
            Reject,
        ),
        (
            "epilogue-oversized-whitespace",
            edit(good, &close, &format!("{close}{}", "\r\n".repeat(1000))),
            Reject,
        ),
    ];
    let sj_close = format!("--{b}--\r\n");
    let sj_open = format!("\r\n\r\n--{b}\r\n");
    v.extend([
        (
            "securejoin-preamble-cleartext",
            edit(sj, &sj_open, &format!("\r\n\r\n{SECRET}\r\n--{b}\r\n")),
            Reject,
        ),
        (
            "securejoin-epilogue-cleartext",
            insert_after(sj, &sj_close, &format!("{SECRET}\r\n")),
            Reject,
        ),
        (
            "securejoin-epilogue-40k",
            edit(
                sj,
                &sj_close,
                &format!("{sj_close}{}", format!("{SECRET}\r\n").repeat(2500)),
            ),
            Reject,
        ),
        (
            "securejoin-dup-content-type",
            edit(
                sj,
                "Content-Type: multipart/mixed",
                "Content-Type: text/plain\r\nContent-Type: multipart/mixed",
            ),
            Reject,
        ),
        (
            "securejoin-dup-secure-join-header",
            edit(
                sj,
                "Secure-Join: vc-request\r\n",
                "Secure-Join: vc-request\r\nSecure-Join: vc-request-with-auth\r\n",
            ),
            Reject,
        ),
        (
            "securejoin-oversized-header",
            // Many short fields: Postfix truncates a single long one.
            edit(
                sj,
                "Secure-Join: vc-request\r\n",
                &format!(
                    "Secure-Join: vc-request\r\n{}",
                    format!("X-Note: {}\r\n", "a".repeat(990)).repeat(70)
                ),
            ),
            Reject,
        ),
        (
            "securejoin-padded-body",
            edit(
                sj,
                "\r\n\r\nSecure-Join: vc-request\r\n",
                &format!("\r\n\r\nSecure-Join: vc-request{}\r\n", " ".repeat(4000)),
            ),
            Reject,
        ),
    ]);
    v.into_iter()
        .map(|(n, raw, e)| (n.to_owned(), raw, e, e))
        .collect()
}
