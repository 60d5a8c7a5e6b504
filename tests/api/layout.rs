//! The crate's layout rules that a reader relies on: no import circle between the top-level modules of `src/`
//! (each layer can be read without the ones above it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file as the compiler sees it outside tests: the unit tests and `//` comments (docs
/// included: a doc link is not an import) cut off.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The top-level modules `code` names through `crate::…` (paths and `use crate::{…}` groups).
fn uses(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Names at the group's first level: `crate::{a, b::c, d::{e, f}}` names a, b and d.
            let (mut depth, mut name) = (0usize, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    c if depth == 0 && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ => {
                        if modules.contains(&name) {
                            found.insert(std::mem::take(&mut name));
                        }
                        name.clear();
                        // Skip the rest of this item (`b::c`) up to the next comma at this level.
                        if c == ':' {
                            continue;
                        }
                    }
                }
            }
            continue;
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if modules.contains(&name) {
            found.insert(name);
        }
    }
    found
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let top = |file: &Path| -> Option<String> {
        let relative = file.strip_prefix(&src).ok()?;
        let first = relative.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_owned();
        (first != "lib" && first != "main").then_some(first)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top(f)).collect();
    assert!(modules.contains("node") && modules.contains("connection"), "found {modules:?}");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = top(file) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        for to in uses(&code(&text), &modules) {
            if to != from {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // A circle is a path back to where it started: depth-first from every module.
    // `clear`: modules already walked without finding one.
    fn walk(
        at: &str,
        path: &mut Vec<String>,
        clear: &mut BTreeSet<String>,
        edges: &BTreeMap<String, BTreeSet<String>>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == at) {
            let mut circle = path[start..].to_vec();
            circle.push(at.to_owned());
            return Some(circle);
        }
        if clear.contains(at) {
            return None;
        }
        path.push(at.to_owned());
        for next in edges.get(at).into_iter().flatten() {
            if let Some(circle) = walk(next, path, clear, edges) {
                return Some(circle);
            }
        }
        path.pop();
        clear.insert(at.to_owned());
        None
    }
    let mut clear = BTreeSet::new();
    for module in &modules {
        if let Some(circle) = walk(module, &mut Vec::new(), &mut clear, &edges) {
            panic!("import circle between top-level modules: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_circle_check_sees_paths_and_groups() {
    let modules: BTreeSet<String> = ["node", "http", "wamp", "topic"].map(String::from).into();
    let code = code("use crate::node::Switchboard;\nuse crate::{http::upgrade, wamp::{v1, v2}};\n// crate::topic\n");
    assert_eq!(uses(&code, &modules), ["http", "node", "wamp"].map(String::from).into());
}
