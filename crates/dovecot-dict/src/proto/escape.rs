//! The escaping of dict fields (Dovecot's `strescape.c`, plus NUL): every
//! field of a line is escaped so that it holds no tab, newline, carriage
//! return or NUL. Used by both `parse` and `encode`.

/// Appends `s` tab-escaped (Dovecot `str_append_tabescaped`, plus NUL).
pub fn tab_escape_into(s: &str, out: &mut Vec<u8>) {
    let mut rest = s.as_bytes();
    out.reserve(rest.len());
    // Values rarely need escaping: copy the runs between special bytes whole.
    while let Some(i) = rest
        .iter()
        .position(|&b| matches!(b, 0 | 1 | b'\t' | b'\r' | b'\n'))
    {
        let esc = match rest[i] {
            0 => b'0',
            1 => b'1',
            b'\t' => b't',
            b'\r' => b'r',
            _ => b'n',
        };
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(&[1, esc]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// `s` tab-escaped (Dovecot `str_tabescape`, plus NUL).
pub fn tab_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\u{1}0"),
            '\u{1}' => out.push_str("\u{1}1"),
            '\t' => out.push_str("\u{1}t"),
            '\r' => out.push_str("\u{1}r"),
            '\n' => out.push_str("\u{1}n"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`tab_escape`] like Dovecot `str_tabunescape`: an unknown
/// escaped character stands for itself and a trailing lone `\001` is dropped.
pub fn tab_unescape(s: &str) -> String {
    if !s.contains('\u{1}') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some('1') => out.push('\u{1}'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_table() {
        let cases: &[(&str, &[u8])] = &[
            ("", b""),
            ("plain", b"plain"),
            ("a\tb", b"a\x01tb"),
            ("a\nb\r", b"a\x01nb\x01r"),
            ("\u{1}", b"\x01\x31"),
            ("\0", b"\x01\x30"),
            ("x\u{1}t", b"x\x01\x31t"),
            ("ü\t€", "ü\u{1}t€".as_bytes()),
        ];
        for (plain, escaped) in cases {
            let mut out = Vec::new();
            tab_escape_into(plain, &mut out);
            assert_eq!(&out, escaped, "escape_into {plain:?}");
            assert_eq!(tab_escape(plain).as_bytes(), *escaped, "escape {plain:?}");
            let esc = std::str::from_utf8(escaped).unwrap();
            assert_eq!(tab_unescape(esc), *plain, "unescape {esc:?}");
        }
    }

    #[test]
    fn unescape_like_dovecot() {
        let cases = [
            ("\u{1}x", "x"),
            ("ab\u{1}", "ab"),
            ("\u{1}\u{1}", "\u{1}"),
            ("\u{1}ü", "ü"),
            ("\u{1}1t", "\u{1}t"),
        ];
        for (esc, plain) in cases {
            assert_eq!(tab_unescape(esc), plain, "{esc:?}");
        }
    }

    #[test]
    fn escape_round_trip() {
        let mut all = String::new();
        for c in (0u32..0x80).chain([0xe9, 0x20ac, 0x1f600]) {
            all.push(char::from_u32(c).unwrap());
        }
        let esc = tab_escape(&all);
        assert!(!esc.contains(['\t', '\n', '\r', '\0']));
        assert_eq!(tab_unescape(&esc), all);
    }
}
