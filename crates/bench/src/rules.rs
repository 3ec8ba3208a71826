//! `chatmail-bench rules`: how many messages per second the encryption rules
//! (`chatmail_e2ee::check_outgoing`, what `chatmail milter` runs at the end
//! of DATA) decide on one core, for a 5 kB and a 1 MB encrypted message,
//! against the limit measured in the same run on the same bytes: a plain
//! base64 decode (the `base64` crate), which any check of an ASCII-armored payload
//! has to do at least. A newline count (what a `memchr` scan costs) is
//! printed too, as the memory-bandwidth floor.
//!
//! The inputs are real OpenPGP/MIME messages from the `testmail` generator
//! (PKESKs for two v4 keys + SEIPDv1) whose SEIPD body is grown with
//! pseudo-random bytes by `testmail::grow`: the rules only walk packet
//! headers, so a valid packet structure with a big SEIPD body is what a big
//! real message looks like to them.

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use chatmail_e2ee::testmail;
use chatmail_e2ee::{AcceptReason, Direction, Envelope, Passthrough, Verdict};

const FROM: &str = "benchsend@bench.example";
const TO: &str = "benchrcpt@bench.example";

/// Measures `check_outgoing` for `seconds` per row on messages of about
/// 5 kB and 1 MB and prints the table.
///
/// # Errors
/// When the generator fails or a grown message is not accepted (then the
/// figures would measure a rejection path).
pub fn run(seconds: f64) -> io::Result<()> {
    let secs = Duration::from_secs_f64(seconds);
    let template = testmail::generate(FROM, &[TO.to_owned()])
        .map_err(io::Error::other)?
        .into_iter()
        .find(|m| m.name == "encrypted-v4-seipdv1")
        .ok_or_else(|| io::Error::other("no encrypted-v4-seipdv1 case"))?;
    println!(
        "chatmail-bench rules: check_outgoing on one core, {seconds:.1} s per row, \
         template {} bytes",
        template.raw.len()
    );
    println!(
        "{:<26} {:>9} {:>11} {:>9} {:>9}",
        "", "bytes", "checks/s", "MB/s", "ratio"
    );
    let recipients = [TO.to_owned()];
    let env = Envelope {
        direction: Direction::Outgoing,
        sender: FROM,
        recipients: &recipients,
        auth_login: Some(FROM),
    };
    for target in [5_000, 1_000_000] {
        let raw = testmail::grow(&template.raw, target).map_err(io::Error::other)?;
        let verdict = chatmail_e2ee::check_outgoing(&env, &raw, &Passthrough::NONE);
        if verdict != Verdict::Accept(AcceptReason::Encrypted) {
            return Err(io::Error::other(format!(
                "grown message of {} bytes: {verdict:?}",
                raw.len()
            )));
        }
        let check = rate(secs, || {
            black_box(chatmail_e2ee::check_outgoing(
                &env,
                black_box(&raw),
                &Passthrough::NONE,
            ));
        });
        let mut out = Vec::with_capacity(raw.len());
        let mut text = Vec::with_capacity(raw.len());
        let decode = rate(secs, || {
            base64_decode(black_box(&raw), &mut text, &mut out);
            black_box(&out);
        });
        let scan = rate(secs, || {
            black_box(black_box(&raw).iter().filter(|&&b| b == b'\n').count());
        });
        let mb = |r: f64| r * raw.len() as f64 / 1e6;
        let label = if target < 100_000 { "5 kB" } else { "1 MB" };
        println!(
            "{:<26} {:>9} {:>11.0} {:>9.1} {:>9}",
            format!("newline scan {label}"),
            raw.len(),
            scan,
            mb(scan),
            ""
        );
        println!(
            "{:<26} {:>9} {:>11.0} {:>9.1} {:>9}",
            format!("base64 decode {label} (limit)"),
            raw.len(),
            decode,
            mb(decode),
            ""
        );
        println!(
            "{:<26} {:>9} {:>11.0} {:>9.1} {:>9.2}",
            format!("check_outgoing {label}"),
            raw.len(),
            check,
            mb(check),
            check / decode
        );
        crate::dkim::rows(label, &raw, secs, check, |d, f| rate(d, f))?;
    }
    println!(
        "ratio = check_outgoing / base64 decode of the same bytes (1.00 = the rules cost no more than decoding the armor)"
    );
    println!(
        "dkim ratio = DKIM operations per second / check_outgoing per second on the same bytes"
    );
    Ok(())
}

/// Calls `f` repeatedly for `duration` (after a short warm-up); calls per second.
fn rate(duration: Duration, mut f: impl FnMut()) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < duration / 10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    // Check the clock every few calls only: a small message takes about a
    // microsecond.
    loop {
        for _ in 0..16 {
            f();
        }
        n += 16;
        if start.elapsed() >= duration {
            break;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Decodes every base64 alphabet character of `input` into `out`, skipping
/// everything else (line ends, `=`): the least work an armor check does.
/// The alphabet characters are gathered into `text` first (reused, so the
/// loop allocates nothing), then decoded by the `base64` crate (trailing
/// bits allowed, so a partial last group decodes as far as it goes, as a
/// streaming decoder would).
fn base64_decode(input: &[u8], text: &mut Vec<u8>, out: &mut Vec<u8>) {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    text.clear();
    text.extend(
        input
            .iter()
            .copied()
            .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/')),
    );
    // A single character left over carries no whole byte.
    if text.len() % 4 == 1 {
        text.pop();
    }
    out.clear();
    let _ = LENIENT.decode_vec(&text, out);
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn decodes_alphabet_characters_only() {
        let (mut text, mut out) = (Vec::new(), Vec::new());
        for (input, want) in [
            (&b"Zm9v\r\nYmFy"[..], &b"foobar"[..]),
            (b"-----\r\nZm9vYg==\r\n=", b"foob"),
            (b"Zm9vYmE=", b"fooba"),
            (b"Zm9vY", b"foo"),
            (b"+/+/", &[0xfb, 0xff, 0xbf]),
            (b"", b""),
        ] {
            base64_decode(input, &mut text, &mut out);
            assert_eq!(out, want);
        }
    }
}
