//! The README and every page under `docs/` stand alone: each path they name inside the
//! repository exists, and none names a file outside it (a sibling checkout, an
//! absolute path on a development machine, a specification or check script the
//! repository does not hold).

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// README.md and docs/**/*.md.
fn pages() -> Vec<PathBuf> {
    let root = repo();
    let mut out = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("docs/ is readable").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The top-level entries a path inside the repository starts with.
const ROOTS: &[&str] = &[
    "crates/", "docs/", "benches/", "tests/", "scripts/", "docker/", "proto/", ".ci/",
];

/// Words that name what lies outside the repository.
const OUTSIDE: &[&str] = &[
    "shared/",
    "CONTRACT",
    "/work/",
    "checks/",
    "../shared",
    "ARCHITECTURE.md",
    "STYLE.md",
];

/// Build outputs and places a command creates: named in commands, never committed.
fn generated(p: &str) -> bool {
    p.starts_with("target/") || p.contains("/target/")
}

/// Markdown link targets: `](x)`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(j) = rest.find(')') {
            out.push(rest[..j].to_string());
            rest = &rest[j..];
        }
    }
    out
}

/// Words that start with a repository root, inside code spans and plain text alike:
/// `crates/mooncake-store/src/daemon.rs`, `docs/ha.md`, ...
fn repo_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '`' | '(' | ')' | '[' | ']' | '"' | '\'' | ',' | ';' | '|' | '<' | '>' | '='
            )
    }) {
        let w = word.trim_end_matches(['.', ':', '*']);
        let Some(start) = ROOTS.iter().filter_map(|r| w.find(r)).min() else {
            continue;
        };
        // Only where the word starts with the root (or after `./`), not inside a URL
        // or another path (`/usr/share/docs/`).
        let before = &w[..start];
        if !(before.is_empty() || before == "./") {
            continue;
        }
        let p = &w[start..];
        // Globs, placeholders and command-line fragments are not paths to check.
        if p.contains(['*', '{', '$', '?']) || p.contains("...") || p.contains("<") {
            continue;
        }
        let p = p.split('#').next().unwrap_or(p);
        // `file.rs:123` names a line.
        let p = match p.rsplit_once(':') {
            Some((f, line)) if line.chars().all(|c| c.is_ascii_digit()) => f,
            _ => p,
        };
        out.push(p.to_string());
    }
    out
}

#[test]
fn every_page_names_only_files_the_repository_holds() {
    let root = repo();
    let mut problems = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page is readable");
        let rel = page
            .strip_prefix(&root)
            .unwrap_or(&page)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            for word in OUTSIDE {
                if line.contains(word) {
                    problems.push(format!("{rel}:{}: names {word:?}: {line}", n + 1));
                }
            }
        }
        for target in links(&text) {
            let t = target.split_whitespace().next().unwrap_or("");
            if t.is_empty() || t.starts_with('#') || t.contains("://") || t.starts_with("mailto:") {
                continue;
            }
            let t = t.split('#').next().unwrap_or(t);
            let path = page.parent().unwrap_or(&root).join(t);
            match path.canonicalize() {
                Ok(real) if real.starts_with(&root) => {}
                Ok(_) => {
                    problems.push(format!("{rel}: link to {target:?}, outside the repository"))
                }
                Err(_) => problems.push(format!("{rel}: link to {target:?}, which does not exist")),
            }
        }
        for p in repo_paths(&text) {
            if generated(&p) {
                continue;
            }
            if !root.join(&p).exists() {
                problems.push(format!(
                    "{rel}: names {p:?}, which is not in the repository"
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_what_it_looks_for() {
    assert_eq!(
        repo_paths("see `crates/mooncake-store/src/daemon.rs:42` and docs/ha.md."),
        vec!["crates/mooncake-store/src/daemon.rs", "docs/ha.md"]
    );
    assert!(repo_paths("http://example.com/docs/x.md /usr/share/docs/y").is_empty());
    assert!(repo_paths("`crates/*/src`").is_empty());
    assert_eq!(
        links("[a](docs/ha.md) and [b](#top)"),
        vec!["docs/ha.md", "#top"]
    );
}
