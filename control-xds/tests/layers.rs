//! The control plane's layers, enforced: every module of `src/` has a layer
//! ([`LAYERS`], the table `lib.rs`'s comment describes), and a module may name
//! (`use crate::…`, `crate::…`, `super::…`) only modules of its own layer or of
//! a lower one. A path that points up fails this test with its file, line and
//! both layers. Tests (`#[cfg(test)]` items, and the files of modules declared
//! `#[cfg(test)] mod name;`) are left out: a unit test may build a whole
//! control plane. A file of `src/` with no layer fails too, so a
//! new module is placed on purpose.

use std::path::{Path, PathBuf};

/// From the ground up: a layer, and the modules (a module path names it and
/// every module under it; the longest match wins) that it holds.
const LAYERS: &[(&str, &[&str])] = &[
    // Time, keys, log budgets, and the API's answers as types (`views`: the
    // wire contract, depending on nothing of the control plane).
    ("base", &["clock", "context_keys", "log_limit", "views"]),
    // The xDS protocol: snapshots, the cache, the ADS server.
    ("xds", &["xds"]),
    // The Canary's plan, error test, state machine and simulations (pure;
    // `progressive` itself only names its modules).
    (
        "canary rules",
        &[
            "progressive",
            "progressive::spec",
            "progressive::analyzer",
            "progressive::machine",
            "progressive::sim",
        ],
    ),
    // Resource files and what they mean (parse, validate, scope, explain).
    (
        "resources",
        &["kind", "load", "scope", "topology", "explain"],
    ),
    // The store, its operations and where it is kept.
    (
        "store",
        &[
            "state",
            "store",
            "history",
            "change_log",
            "leadership",
            "state_store",
            "persist",
            "atomic_file",
            "etcd",
            "auth",
            "replicas",
        ],
    ),
    // What is derived from a store, purely: proxy configuration of every
    // kind, and the rollouts' assessment.
    (
        "derived",
        &[
            "snapshot_builder",
            "render",
            "bootstrap",
            "istio",
            "package",
            "native_filter",
            "progressive::assess",
        ],
    ),
    // The running control plane and what it serves besides the API.
    (
        "serving",
        &[
            "serve",
            "propagation",
            "tls",
            "http_server",
            "progressive::lrs",
            "progressive::notify",
            "progressive::observed",
            // The dashboard's files and the rollouts' samples it plots.
            "ui",
        ],
    ),
    // The HTTP API.
    ("api", &["api", "metrics", "progressive::api"]),
    // The process: the CLI, its client, and the wiring of `serve`.
    (
        "process",
        &[
            "cli",
            "completions",
            "client",
            "credentials",
            "daemon",
            "start",
            "progressive::driver",
            "progressive::cli",
            "test_fixtures",
            "main",
        ],
    ),
];

/// The layer (its rank and name) of `module` (`a::b::c`): the longest table
/// entry that is `module` or one of its parents.
fn layer_of(module: &str) -> Option<(usize, &'static str)> {
    let mut best: Option<(usize, usize, &'static str)> = None;
    for (rank, (name, modules)) in LAYERS.iter().enumerate() {
        for m in *modules {
            let hit = module == *m || module.starts_with(&format!("{m}::"));
            if hit && best.is_none_or(|(len, _, _)| m.len() > len) {
                best = Some((m.len(), rank, name));
            }
        }
    }
    best.map(|(_, rank, name)| (rank, name))
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`; `src/lib.rs` → ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules `text` (the file of `module`) declares for tests only:
/// `#[cfg(test)] mod name;`.
fn test_modules(text: &str, module: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "#[cfg(test)]")
        .filter_map(|w| w[1].strip_prefix("mod ")?.strip_suffix(';'))
        .map(|name| {
            if module.is_empty() {
                name.to_string()
            } else {
                format!("{module}::{name}")
            }
        })
        .collect()
}

/// The lines of `text` outside `#[cfg(test)]` items, with their numbers and
/// without comments.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            // the item: a one-line declaration, or a block up to its closing
            // brace at the same indentation
            let Some((_, item)) = lines.next() else { break };
            if item.trim_end().ends_with('{') {
                let indent = item.len() - item.trim_start().len();
                let close = format!("{}}}", " ".repeat(indent));
                for (_, l) in lines.by_ref() {
                    if l.trim_end() == close {
                        break;
                    }
                }
            }
            continue;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push((n + 1, code.to_string()));
    }
    out
}

/// The module paths a line names: `crate::a::b` (also `switchyard::`, how the
/// binary names the library) and `super::c`, with `use` groups
/// (`crate::{a, b::c}`) opened. Each is the whole path; [`layer_of`] finds
/// the module in it.
fn paths_named(line: &str, module: &str, is_mod_rs: bool) -> Vec<String> {
    let mut found = Vec::new();
    for root in ["crate::", "switchyard::", "super::"] {
        let mut rest = line;
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().last();
            rest = &rest[i + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let base = match root {
                "super::" => {
                    let mut parts: Vec<&str> = module.split("::").collect();
                    if !is_mod_rs {
                        parts.pop();
                    }
                    parts.join("::")
                }
                _ => String::new(),
            };
            for tail in expand(rest) {
                let joined = if base.is_empty() {
                    tail
                } else {
                    format!("{base}::{tail}")
                };
                found.push(joined);
            }
        }
    }
    found
}

/// The paths that start `text`: `a::b::C` → [`a::b::C`]; `{a::X, b}` → [`a::X`, `b`].
fn expand(text: &str) -> Vec<String> {
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[start..i]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return items
            .into_iter()
            .flat_map(|item| expand(item.trim()))
            .collect();
    }
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    let path = text[..end].trim_end_matches(':');
    if path.is_empty() {
        Vec::new()
    } else {
        vec![path.to_string()]
    }
}

#[test]
fn every_import_points_to_the_same_layer_or_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut test_only = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        test_only.extend(test_modules(&text, &module_of(&src, file)));
    }
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if test_only
            .iter()
            .any(|t| module == *t || module.starts_with(&format!("{t}::")))
        {
            continue;
        }
        let shown = file.strip_prefix(src.parent().unwrap()).unwrap().display();
        if module.is_empty() {
            continue; // lib.rs: only `mod` lines
        }
        let Some((rank, layer)) = layer_of(&module) else {
            wrong.push(format!(
                "{shown}: module `{module}` has no layer in tests/layers.rs"
            ));
            continue;
        };
        let is_mod_rs = file.file_name().is_some_and(|n| n == "mod.rs");
        let text = std::fs::read_to_string(file).unwrap();
        for (line, code) in code_lines(&text) {
            for path in paths_named(&code, &module, is_mod_rs) {
                match layer_of(&path) {
                    Some((to, to_layer)) if to > rank => wrong.push(format!(
                        "{shown}:{line}: `{module}` ({layer}) names `{path}` ({to_layer}), a higher layer"
                    )),
                    Some(_) => {}
                    None => wrong.push(format!(
                        "{shown}:{line}: `{path}` names a module with no layer in tests/layers.rs"
                    )),
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} import(s) point up a layer (layers, from the ground: {}):\n{}",
        wrong.len(),
        LAYERS
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(" → "),
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_an_upward_import() {
    let lines = code_lines(
        "use crate::{clock::now_unix_ms, serve::ControlPlane};\n// crate::api\n#[cfg(test)]\nmod tests {\n    use crate::daemon;\n}\n",
    );
    let named: Vec<String> = lines
        .iter()
        .flat_map(|(_, l)| paths_named(l, "load", false))
        .collect();
    assert_eq!(named, ["clock::now_unix_ms", "serve::ControlPlane"]);
    assert_eq!(layer_of("load").map(|l| l.1), Some("resources"));
    assert_eq!(
        layer_of("serve::ControlPlane").map(|l| l.1),
        Some("serving")
    );
    assert_eq!(
        paths_named("use super::spec::Plan;", "progressive::machine", false),
        ["progressive::spec::Plan"]
    );
    assert_eq!(
        layer_of("progressive::driver::run").map(|l| l.1),
        Some("process")
    );
    assert_eq!(
        test_modules(
            "mod encode;\n#[cfg(test)]\nmod tests;\n",
            "snapshot_builder"
        ),
        ["snapshot_builder::tests"]
    );
}
