//! `docs/design.md`'s table of crates against the build: every workspace
//! crate has a row, every row a crate, and the "may depend on" column names
//! exactly the workspace crates it depends on (normal dependencies), as
//! `cargo metadata` reports them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The workspace's crates by directory name (`crates/<name>`), each with
/// the directory names of the workspace crates it depends on.
fn from_cargo(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let dir_of = |manifest: &str| -> String {
        Path::new(manifest)
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .expect("crates/<name>/Cargo.toml")
            .to_owned()
    };
    let by_package: BTreeMap<&str, String> = packages
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name"),
                dir_of(p["manifest_path"].as_str().expect("manifest_path")),
            )
        })
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| by_package.get(d["name"].as_str()?).cloned())
                .collect();
            (
                dir_of(p["manifest_path"].as_str().expect("manifest_path")),
                deps,
            )
        })
        .collect()
}

/// The names in backquotes of a table cell.
fn quoted(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The rows of the table under "### Crates": crate -> the crates its
/// "may depend on" cell names.
fn from_design(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let section = text
        .split("### Crates")
        .nth(1)
        .expect("a section ### Crates");
    let mut rows = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        if line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        let [name, _owns, deps] = cells[..] else {
            panic!("a row of three cells: {line}");
        };
        let Some(name) = quoted(name).into_iter().next() else {
            continue; // the header
        };
        let deps = if deps.trim() == "nothing of ours" {
            BTreeSet::new()
        } else {
            quoted(deps)
        };
        assert!(rows.insert(name.clone(), deps).is_none(), "{name} twice");
    }
    rows
}

#[test]
fn the_crate_table_is_the_build() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("docs/design.md")).expect("docs/design.md");
    let design = from_design(&text);
    let cargo = from_cargo(&root);
    let names = |m: &BTreeMap<String, BTreeSet<String>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&design),
        names(&cargo),
        "crates in docs/design.md vs the workspace"
    );
    for (name, deps) in &cargo {
        assert_eq!(&design[name], deps, "docs/design.md, the row of `{name}`");
    }
}

#[test]
fn the_parser_sees_a_wrong_row() {
    let text = "### Crates\n\n| crate | owns | may depend on |\n|---|---|---|\n\
                | `a` | x | `b`, `c` (why) |\n| `b` | y | nothing of ours |\n\nmore\n";
    let rows = from_design(text);
    assert_eq!(rows["a"], BTreeSet::from(["b".to_owned(), "c".to_owned()]));
    assert!(rows["b"].is_empty());
    assert_eq!(rows.len(), 2);
}
