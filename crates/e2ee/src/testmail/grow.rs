//! Encrypted test mail of any size: a generated case whose SEIPD packet is
//! replaced by one with a longer (or shorter) body. The rules only walk
//! packet headers, so a valid packet structure with a big SEIPD body is
//! what a big real message looks like to them; the milter's memory tests
//! and the benchmarks send such messages.

use super::Error;
use super::wire::{Crc, armor, packet};
use crate::packets::{self, TAG_SEIPD};

const BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
const END: &[u8] = b"-----END PGP MESSAGE-----\r\n";

/// `template` with the SEIPD packet in its armor replaced by one whose body
/// is grown (or shrunk) so that the whole message is about `target` bytes.
///
/// # Errors
/// [`Error::Template`] when `template` holds no armored SEIPD packet.
pub fn grow(template: &[u8], target: usize) -> Result<Vec<u8>, Error> {
    let bad = |why: &str| Error::Template(why.to_owned());
    let no_payload = || bad("no armored payload");
    let begin = find(template, BEGIN).ok_or_else(no_payload)?;
    let end = find(&template[begin..], END).ok_or_else(no_payload)? + begin + END.len();
    let data =
        crate::armor::dearmor(&template[begin..end], false).map_err(|e| bad(&e.to_string()))?;
    let found = packets::split(&data).map_err(|e| bad(&e.to_string()))?;
    let (seipd, esks) = found.split_last().ok_or_else(no_payload)?;
    if seipd.tag != TAG_SEIPD {
        return Err(no_payload());
    }
    let esk_bytes: Vec<u8> = esks
        .iter()
        .flat_map(|p| data[p.range.clone()].iter().copied())
        .collect();
    let build = |body_len: usize| {
        let mut body = vec![1u8]; // SEIPD version 1
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        body.extend((0..body_len).map(|_| {
            // xorshift64: incompressible, like ciphertext.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        let mut bin = esk_bytes.clone();
        bin.extend(packet(TAG_SEIPD, &body));
        let mut out = template[..begin].to_vec();
        out.extend_from_slice(armor(&bin, &[], Crc::Correct).as_bytes());
        out.extend_from_slice(&template[end..]);
        out
    };
    // Armor costs 4/3 for base64 and 66/64 for CRLF line ends; one
    // correction step lands within a few bytes.
    let mut body_len = target.saturating_sub(template.len() - (end - begin)) * 3 / 4 * 64 / 66;
    body_len = body_len.saturating_sub(esk_bytes.len());
    let first = build(body_len);
    let diff = target as i64 - first.len() as i64;
    body_len = (body_len as i64 + diff * 3 / 4 * 64 / 66).max(1) as usize;
    Ok(build(body_len))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::grow;
    use crate::testmail::{Error, generate};
    use crate::{AcceptReason, Direction, Envelope, Passthrough, Verdict, check_outgoing};

    const FROM: &str = "alice@chat.example";

    /// Grown messages are as large as asked, within a few bytes, and still
    /// one encrypted message to the rules.
    #[test]
    fn grown_to_size_and_accepted() {
        let to = [String::from("bob@other.example")];
        let mails = generate(FROM, &to).unwrap();
        let case = |name: &str| &mails.iter().find(|m| m.name == name).unwrap().raw;
        let env = Envelope {
            direction: Direction::Outgoing,
            sender: FROM,
            recipients: &to,
            auth_login: Some(FROM),
        };
        for target in [3_000, 50_000, 1_000_000] {
            let raw = grow(case("encrypted-v4-seipdv1"), target).unwrap();
            assert!(raw.len().abs_diff(target) < 100, "{target}: {}", raw.len());
            assert_eq!(
                check_outgoing(&env, &raw, &Passthrough::NONE),
                Verdict::Accept(AcceptReason::Encrypted),
                "{target}"
            );
        }
        assert!(matches!(
            grow(case("cleartext"), 5_000),
            Err(Error::Template(_))
        ));
    }
}
