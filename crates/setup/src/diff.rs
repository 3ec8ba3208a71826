//! The line diff `chatmail setup --dry-run` prints for each file it would
//! change.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Add,
}

/// A unified diff (3 lines of context) from `old` to `new`, labelled with
/// `name`; empty when the texts are equal. A missing old file diffs against
/// `/dev/null` so the output reads like `diff -u`'s.
pub fn unified_diff(name: &str, old: Option<&str>, new: &str) -> String {
    let a: Vec<&str> = old.unwrap_or("").lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if old == Some(new) {
        return String::new();
    }
    // Plain LCS table: config files are a few hundred lines, so O(n·m) is
    // instant and the output is minimal.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i] == b[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let mut ops = Vec::with_capacity(n + m);
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((Op::Same, i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            // Deletions first on a tie, as diff -u prints them.
            ops.push((Op::Del, i, j));
            i += 1;
        } else {
            ops.push((Op::Add, i, j));
            j += 1;
        }
    }
    let mut out = match old {
        Some(_) => format!("--- {name}\n+++ {name} (new)\n"),
        None => format!("--- /dev/null\n+++ {name}\n"),
    };
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != Op::Same).collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let a_len = hunk.iter().filter(|o| o.0 != Op::Add).count();
        let b_len = hunk.iter().filter(|o| o.0 != Op::Del).count();
        let (a0, b0) = (hunk[0].1, hunk[0].2);
        let first = |start: usize, len: usize| if len == 0 { start } else { start + 1 };
        out.push_str(&format!(
            "@@ -{},{a_len} +{},{b_len} @@\n",
            first(a0, a_len),
            first(b0, b_len)
        ));
        for &(op, i, j) in hunk {
            match op {
                Op::Same => out.push_str(&format!(" {}\n", a[i])),
                Op::Del => out.push_str(&format!("-{}\n", a[i])),
                Op::Add => out.push_str(&format!("+{}\n", b[j])),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n";
        let d = unified_diff("f", Some(old), new);
        assert_eq!(
            d,
            "--- f\n+++ f (new)\n@@ -2,9 +2,10 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n 9\n 10\n+11\n"
        );
        assert_eq!(unified_diff("f", Some(old), old), "");
    }

    #[test]
    fn diff_of_a_new_file_adds_everything() {
        assert_eq!(
            unified_diff("f", None, "a\nb\n"),
            "--- /dev/null\n+++ f\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
    }
}
