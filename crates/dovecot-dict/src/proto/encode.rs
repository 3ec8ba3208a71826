//! Reply lines: the exact bytes the server answers with, built from the
//! results of [`crate::types`].

use super::escape::{tab_escape, tab_escape_into};
use crate::types::{CommitResult, LookupResult};

/// One reply line (or, for iteration, one of several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Lookup answer: `O<value>`; several values as
    /// `M<esc(esc(v1)\tesc(v2)...)>` (one value is sent as `O`, none as
    /// `N`, as the stock server does); a miss as `N`; a failure as
    /// `F<error>`.
    Lookup(LookupResult),
    /// Iterate failure, or an unparsable request that expects an answer:
    /// `F<error>` (`F` alone when the error is empty).
    Failed(String),
    /// One iterate row: `O<key>\t<value>`.
    IterateRow { key: String, value: String },
    /// End of iteration: an empty line.
    IterateEnd,
    /// Commit result: `[A]<O|N|F|W><id>[\t<error>]`; the `A` prefix answers
    /// `D` (async commit).
    Commit {
        id: u32,
        result: CommitResult,
        async_commit: bool,
    },
}

impl Reply {
    /// Appends the exact bytes of this reply, escaping and `\n` included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Lookup(LookupResult::Found(v)) => {
                out.push(b'O');
                tab_escape_into(v, out);
            }
            Reply::Lookup(LookupResult::FoundMany(vs)) => match vs.as_slice() {
                [] => out.push(b'N'),
                [v] => {
                    out.push(b'O');
                    tab_escape_into(v, out);
                }
                _ => {
                    // Escaped twice so all values travel as one field.
                    let mut inner = String::new();
                    for (i, v) in vs.iter().enumerate() {
                        if i > 0 {
                            inner.push('\t');
                        }
                        inner.push_str(&tab_escape(v));
                    }
                    out.push(b'M');
                    tab_escape_into(&inner, out);
                }
            },
            Reply::Lookup(LookupResult::NotFound) => out.push(b'N'),
            Reply::Lookup(LookupResult::Failed(e)) | Reply::Failed(e) => {
                out.push(b'F');
                tab_escape_into(e, out);
            }
            Reply::IterateRow { key, value } => {
                out.push(b'O');
                tab_escape_into(key, out);
                out.push(b'\t');
                tab_escape_into(value, out);
            }
            Reply::IterateEnd => {}
            Reply::Commit {
                id,
                result,
                async_commit,
            } => {
                if *async_commit {
                    out.push(b'A');
                }
                let (chr, error) = match result {
                    CommitResult::Ok => (b'O', None),
                    CommitResult::NotFound => (b'N', None),
                    CommitResult::Failed(e) => (b'F', Some(e)),
                    CommitResult::WriteUncertain(e) => (b'W', Some(e)),
                };
                out.push(chr);
                out.extend_from_slice(id.to_string().as_bytes());
                if let Some(e) = error {
                    out.push(b'\t');
                    tab_escape_into(e, out);
                }
            }
        }
        out.push(b'\n');
    }

    /// The encoded bytes as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tab_unescape;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn reply_encoding() {
        let cases: Vec<(Reply, &[u8])> = vec![
            (Reply::Lookup(LookupResult::Found(s("v"))), b"Ov\n"),
            (Reply::Lookup(LookupResult::Found(s(""))), b"O\n"),
            (
                Reply::Lookup(LookupResult::Found(s("a\tb\nc\u{1}"))),
                b"Oa\x01tb\x01nc\x01\x31\n",
            ),
            (Reply::Lookup(LookupResult::FoundMany(vec![])), b"N\n"),
            (
                Reply::Lookup(LookupResult::FoundMany(vec![s("a\tb")])),
                b"Oa\x01tb\n",
            ),
            (
                Reply::Lookup(LookupResult::FoundMany(vec![s("a"), s("b\tc")])),
                b"Ma\x01tb\x01\x31tc\n",
            ),
            (Reply::Lookup(LookupResult::NotFound), b"N\n"),
            (Reply::Failed(s("")), b"F\n"),
            (Reply::Failed(s("db\tdown")), b"Fdb\x01tdown\n"),
            (
                Reply::Lookup(LookupResult::Failed(s("db\tdown"))),
                b"Fdb\x01tdown\n",
            ),
            (
                Reply::IterateRow {
                    key: s("shared/userdb/a@b"),
                    value: s("{\"x\":1}"),
                },
                b"Oshared/userdb/a@b\t{\"x\":1}\n",
            ),
            (
                Reply::IterateRow {
                    key: s("k\t"),
                    value: s(""),
                },
                b"Ok\x01t\t\n",
            ),
            (Reply::IterateEnd, b"\n"),
            (
                Reply::Commit {
                    id: 1,
                    result: CommitResult::Ok,
                    async_commit: false,
                },
                b"O1\n",
            ),
            (
                Reply::Commit {
                    id: 2,
                    result: CommitResult::NotFound,
                    async_commit: false,
                },
                b"N2\n",
            ),
            (
                Reply::Commit {
                    id: 3,
                    result: CommitResult::Failed(s("no\tspace")),
                    async_commit: false,
                },
                b"F3\tno\x01tspace\n",
            ),
            (
                Reply::Commit {
                    id: 4,
                    result: CommitResult::WriteUncertain(s("timeout")),
                    async_commit: false,
                },
                b"W4\ttimeout\n",
            ),
            (
                Reply::Commit {
                    id: 5,
                    result: CommitResult::Ok,
                    async_commit: true,
                },
                b"AO5\n",
            ),
            (
                Reply::Commit {
                    id: 6,
                    result: CommitResult::Failed(s("x")),
                    async_commit: true,
                },
                b"AF6\tx\n",
            ),
        ];
        for (reply, want) in cases {
            assert_eq!(
                reply.to_bytes(),
                want,
                "{reply:?} -> {:?}",
                String::from_utf8_lossy(&reply.to_bytes())
            );
        }
    }

    #[test]
    fn multi_values_decode_like_the_client() {
        // dict-client.c splits the line on tabs and unescapes each field, then
        // splits an `M` value again; do the same and get the values back.
        let vals = vec![s("a\tb"), s("c\u{1}"), s("")];
        let bytes = Reply::Lookup(LookupResult::FoundMany(vals.clone())).to_bytes();
        let line = std::str::from_utf8(&bytes[..bytes.len() - 1]).unwrap();
        let fields: Vec<String> = line.split('\t').map(tab_unescape).collect();
        assert_eq!(fields.len(), 1);
        let inner = fields[0].strip_prefix('M').unwrap();
        let got: Vec<String> = inner.split('\t').map(tab_unescape).collect();
        assert_eq!(got, vals);
    }
}
