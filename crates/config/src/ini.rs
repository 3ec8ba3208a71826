//! The INI dialect of `chatmail.ini`.
//!
//! chatmaild reads its config with the Python `iniconfig` package
//! (`iniconfig.IniConfig(path)`), not with `configparser`. An operator's file is only known to
//! work with that dialect, so this module reproduces it (see docs/design.md, "Compatibility
//! contract"):
//!
//! - a line whose first non-blank character is `#` or `;` is a comment, as is a blank line;
//! - there are no inline comments in values: `key = 5 # five` has the value `5 # five`
//!   (only section header lines drop everything from the first `#`/`;`);
//! - `key = value` or `key: value` (a `:` before the first `=` makes `:` the separator);
//!   key and value are trimmed; keys are case-sensitive;
//! - a line starting with whitespace continues the previous value, joined with `\n`;
//! - duplicate sections, duplicate keys in a section, keys before any section header,
//!   empty section names, and lines without a separator are errors;
//! - a UTF-8 byte order mark at the start is ignored; lines end at the same characters as
//!   Python's `str.splitlines`.

use crate::ConfigError;

/// One `key = value` entry; `line` is 1-based.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// Splits like Python's `str.splitlines()`, which is what iniconfig uses.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let is_break = matches!(
            c,
            '\n' | '\r'
                | '\u{0b}'
                | '\u{0c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if is_break {
            lines.push(&text[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r'
                && let Some(&(j, '\n')) = chars.peek()
            {
                chars.next();
                end = j + 1;
            }
            start = end;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

fn syntax(line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError::Syntax {
        line,
        message: message.into(),
    }
}

/// Parses the whole file into its sections, in file order.
pub(crate) fn parse(text: &str) -> Result<Vec<Section>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections: Vec<Section> = Vec::new();
    // Whether the last token was a key (continuations attach to it) or a section header.
    let mut last_was_value = false;
    for (index, raw) in split_lines(text).into_iter().enumerate() {
        let lineno = index + 1;
        let first = raw.trim_start().chars().next();
        if matches!(first, None | Some('#') | Some(';')) {
            continue;
        }
        let line = raw.trim_end();
        let continuation: &str;
        if line.starts_with('[') {
            let mut header = line;
            for c in ['#', ';'] {
                header = header.split(c).next().unwrap_or_default().trim_end();
            }
            if header.len() >= 2 && header.ends_with(']') {
                let name = &header[1..header.len() - 1];
                if name.is_empty() {
                    return Err(syntax(lineno, "empty section name"));
                }
                if sections.iter().any(|s| s.name == name) {
                    return Err(syntax(
                        lineno,
                        format!("duplicate section {}", crate::shown(name)),
                    ));
                }
                sections.push(Section {
                    name: name.to_owned(),
                    line: lineno,
                    entries: Vec::new(),
                });
                last_was_value = false;
                continue;
            }
            // iniconfig quirk: an unterminated `[...` line is a value continuation.
            continuation = line.trim();
        } else if !line.starts_with(char::is_whitespace) {
            let (key, value) = split_key_value(line).ok_or_else(|| {
                syntax(lineno, format!("unexpected line: {}", crate::shown(line)))
            })?;
            let Some(section) = sections.last_mut() else {
                return Err(syntax(lineno, "no section header defined"));
            };
            if section.entries.iter().any(|e| e.key == key) {
                return Err(syntax(
                    lineno,
                    format!("duplicate name {}", crate::shown(key)),
                ));
            }
            section.entries.push(Entry {
                key: key.to_owned(),
                value: value.to_owned(),
                line: lineno,
            });
            last_was_value = true;
            continue;
        } else {
            continuation = line.trim();
        }
        let target = sections
            .last_mut()
            .and_then(|s| s.entries.last_mut())
            .filter(|_| last_was_value)
            .ok_or_else(|| syntax(lineno, "unexpected value continuation"))?;
        if !target.value.is_empty() {
            target.value.push('\n');
        }
        target.value.push_str(continuation);
    }
    Ok(sections)
}

fn split_key_value(line: &str) -> Option<(&str, &str)> {
    if let Some((name, value)) = line.split_once('=')
        && !name.contains(':')
    {
        return Some((name.trim(), value.trim()));
    }
    line.split_once(':')
        .map(|(name, value)| (name.trim(), value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(text: &str) -> Vec<(String, String)> {
        let sections = parse(text).unwrap();
        sections[0]
            .entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn line_splitting_matches_python_splitlines() {
        assert_eq!(split_lines("a\nb\r\nc\rd"), ["a", "b", "c", "d"]);
        assert_eq!(split_lines("a\n"), ["a"]);
        assert_eq!(split_lines("a\n\nb"), ["a", "", "b"]);
        assert_eq!(split_lines("a\u{2028}b\u{0c}c"), ["a", "b", "c"]);
        assert!(split_lines("").is_empty());
    }

    #[test]
    fn dialect_case_table() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("[params]\na = 1\n", &[("a", "1")]),
            ("[params]\na=1", &[("a", "1")]),
            (
                "[params]\na = 1 # not a comment",
                &[("a", "1 # not a comment")],
            ),
            (
                "[params]\na = 1 ; not a comment",
                &[("a", "1 ; not a comment")],
            ),
            ("[params] # comment\na = 1", &[("a", "1")]),
            (
                "[params]\n# c\n; c\n   # indented comment\na = 1",
                &[("a", "1")],
            ),
            ("[params]\na: 1", &[("a", "1")]),
            ("[params]\na = http://x:1", &[("a", "http://x:1")]),
            ("[params]\na:b = c", &[("a", "b = c")]),
            ("[params]\na =\n  x\n  y", &[("a", "x\ny")]),
            ("[params]\na = w\n  x\n\n  # c\n  y", &[("a", "w\nx\ny")]),
            ("[params]\nA = 1\na = 2", &[("A", "1"), ("a", "2")]),
            ("\u{feff}[params]\na = 1", &[("a", "1")]),
            ("[params]\r\na = 1\r\n", &[("a", "1")]),
            ("[params]\na = 1\n  [x", &[("a", "1\n[x")]),
            ("[params]\n= 1", &[("", "1")]),
        ];
        for (text, expected) in cases {
            assert_eq!(params(text), kv(expected), "{text:?}");
        }
    }

    #[test]
    fn sections_are_kept_apart() {
        let sections = parse("[a]\nx = 1\n[b]\nx = 2\n").unwrap();
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[1].name, "b");
        assert_eq!(sections[1].entries[0].value, "2");
        assert_eq!(sections[1].entries[0].line, 4);
    }

    #[test]
    fn syntax_errors() {
        let cases: &[(&str, usize, &str)] = &[
            ("a = 1", 1, "no section header defined"),
            ("[params]\na = 1\na = 2", 3, "duplicate name \"a\""),
            ("[params]\n[params]", 2, "duplicate section \"params\""),
            ("[]\n", 1, "empty section name"),
            ("[params]\njunk", 2, "unexpected line: \"junk\""),
            ("  x", 1, "unexpected value continuation"),
            ("[params]\n  x", 2, "unexpected value continuation"),
        ];
        for (text, line, message) in cases {
            match parse(text) {
                Err(ConfigError::Syntax {
                    line: l,
                    message: m,
                }) => {
                    assert_eq!((l, m.as_str()), (*line, *message), "{text:?}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
