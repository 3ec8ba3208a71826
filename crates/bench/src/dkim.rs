//! DKIM rows of `chatmail bench rules`: signing (what `chatmail milter`
//! adds at the end of DATA for submitted mail) and verifying (for mail from
//! other servers, with the key record given: DNS is one round trip on top,
//! none when cached) on the same message as the encryption check.

use std::hint::black_box;
use std::io;
use std::time::Duration;

use chatmail_dkim::offline::OfflineVerifier;
use chatmail_dkim::{Outcome, Signer};

/// Prints the sign and verify rows for `raw` next to `check` (the
/// encryption check's rate on the same bytes), with `rate` measuring.
///
/// # Errors
/// When the key cannot be made or the signed message does not verify.
pub fn rows(
    label: &str,
    raw: &[u8],
    secs: Duration,
    check: f64,
    rate: impl Fn(Duration, &mut dyn FnMut()) -> f64 + Send + Sync,
) -> io::Result<()> {
    // The offline verifier drives its own runtime: not on a runtime thread.
    std::thread::scope(|s| {
        s.spawn(|| rows_here(label, raw, secs, check, &rate))
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the DKIM benchmark panicked")))
    })
}

fn rows_here(
    label: &str,
    raw: &[u8],
    secs: Duration,
    check: f64,
    rate: &(impl Fn(Duration, &mut dyn FnMut()) -> f64 + Sync),
) -> io::Result<()> {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, chatmail_dkim::key::KEY_BITS)
        .map_err(io::Error::other)?;
    let txt = chatmail_dkim::txt_record(&key);
    let signer = Signer::new(key, "bench.example", "bench");
    let sign = rate(secs, &mut || {
        black_box(signer.sign(black_box(raw), 1_700_000_000).ok());
    });
    let value = signer.sign(raw, 1_700_000_000).map_err(io::Error::other)?;
    let mut signed = format!("DKIM-Signature:{}\r\n", value.replace('\n', "\r\n")).into_bytes();
    signed.extend_from_slice(raw);
    let verifier = OfflineVerifier::new(&[("bench._domainkey.bench.example.".to_owned(), txt)]);
    let outcome = verifier.check(&signed);
    if !matches!(outcome, Outcome::Pass { .. }) {
        return Err(io::Error::other(format!(
            "signed bench message: {outcome:?}"
        )));
    }
    let verify = rate(secs, &mut || {
        black_box(verifier.check(black_box(&signed)));
    });
    let mb = |r: f64| r * raw.len() as f64 / 1e6;
    for (what, r) in [("dkim sign", sign), ("dkim verify (no DNS)", verify)] {
        println!(
            "{:<26} {:>9} {:>11.0} {:>9.1} {:>9.2}",
            format!("{what} {label}"),
            raw.len(),
            r,
            mb(r),
            r / check
        );
    }
    Ok(())
}
