//! What makes each run of the generator different: freshly generated
//! OpenPGP keys, and the ciphertexts and signature made with them.

use std::io::Write;

use sequoia_openpgp as openpgp;

use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Signer};
use openpgp::types::Features;
use openpgp::{Cert, Profile};

use super::{Error, SECRET, pgp};

/// Key flavours for the encrypted cases.
#[derive(Debug, Clone, Copy)]
enum KeyKind {
    /// v4 key advertising SEIPDv1 only: sequoia writes PKESKv3 + SEIPDv1.
    V4Seipd1,
    /// v4 key advertising SEIPDv2: PKESKv6 + SEIPDv2.
    V4Seipd2,
    /// v6 key (RFC 9580 profile): PKESKv6 + SEIPDv2.
    V6,
}

fn gen_cert(addr: &str, kind: KeyKind) -> Result<Cert, Error> {
    let b =
        CertBuilder::general_purpose([format!("<{addr}>")]).set_cipher_suite(CipherSuite::Cv25519);
    let b = match kind {
        KeyKind::V4Seipd1 => pgp(b.set_features(Features::empty().set_seipdv1()))?,
        KeyKind::V4Seipd2 => pgp(b.set_features(Features::empty().set_seipdv1().set_seipdv2()))?,
        KeyKind::V6 => pgp(b.set_profile(Profile::RFC9580))?,
    };
    Ok(pgp(b.generate())?.0)
}

fn encrypt(certs: &[Cert], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let policy = StandardPolicy::new();
    let mut recipients = Vec::new();
    for cert in certs {
        let vc = pgp(cert.with_policy(&policy, None))?;
        recipients.extend(
            vc.keys()
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption(),
        );
    }
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = pgp(Encryptor::for_recipients(message, recipients).build())?;
    let mut w = pgp(LiteralWriter::new(message).build())?;
    w.write_all(plaintext)?;
    pgp(w.finalize())?;
    Ok(sink)
}

fn encrypt_with_password(plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = pgp(Encryptor::with_passwords(message, Some("test-password")).build())?;
    let mut w = pgp(LiteralWriter::new(message).build())?;
    w.write_all(plaintext)?;
    pgp(w.finalize())?;
    Ok(sink)
}

fn sign_only(cert: &Cert, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let policy = StandardPolicy::new();
    let key = pgp(cert.with_policy(&policy, None))?
        .keys()
        .unencrypted_secret()
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .next()
        .ok_or_else(|| Error::OpenPgp("no signing key".into()))?
        .key()
        .clone();
    let keypair = pgp(key.into_keypair())?;
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = pgp(pgp(Signer::new(message, keypair))?.build())?;
    let mut w = pgp(LiteralWriter::new(message).build())?;
    w.write_all(plaintext)?;
    pgp(w.finalize())?;
    Ok(sink)
}

/// What makes each run of the generator different: ciphertexts and a
/// signature made with freshly generated keys. Everything else is built
/// from these bytes and the envelope, deterministically.
pub(super) struct Material {
    /// Encrypted to v4 keys advertising SEIPDv1 only.
    pub(super) v4_seipd1: Vec<u8>,
    /// Encrypted to v4 keys advertising SEIPDv2.
    pub(super) v4_seipd2: Vec<u8>,
    /// Encrypted to v6 keys.
    pub(super) v6: Vec<u8>,
    /// Encrypted with a password (SKESK).
    pub(super) password: Vec<u8>,
    /// Signed, not encrypted.
    pub(super) signed: Vec<u8>,
    /// The secret of the Autocrypt Setup Message, encrypted with a password.
    pub(super) setup_secret: Vec<u8>,
}

/// The plaintext of every encrypted case.
const INNER: &[u8] =
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello from the test suite.\r\n";

impl Material {
    pub(super) fn new(from: &str, to: &[String]) -> Result<Material, Error> {
        let rcpt = to.first().map_or("rcpt@example.org", |s| s.as_str());
        let mut keys = Vec::new();
        for kind in [KeyKind::V4Seipd1, KeyKind::V4Seipd2, KeyKind::V6] {
            keys.push((gen_cert(rcpt, kind)?, gen_cert(from, kind)?));
        }
        let [v4_seipd1, v4_seipd2, v6] = [0, 1, 2].map(|i| {
            let (rcpt, me) = &keys[i];
            encrypt(&[rcpt.clone(), me.clone()], INNER)
        });
        Ok(Material {
            v4_seipd1: v4_seipd1?,
            v4_seipd2: v4_seipd2?,
            v6: v6?,
            password: encrypt_with_password(INNER)?,
            signed: sign_only(&keys[0].1, SECRET.as_bytes())?,
            setup_secret: encrypt_with_password(b"secret key")?,
        })
    }
}
