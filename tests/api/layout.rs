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

/// The code of a file as the compiler sees it outside tests: the inline unit-test module and `//` comments
/// (docs included: a doc link is not an import) cut off. A `//` inside a string ends the line early, which can
/// only hide a path, never invent one.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
    text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The top-level modules `code` names through `crate::…`: paths, `use crate::{…}` groups, and names the crate
/// root re-exports (`crate::Switchboard` is `node`'s), given in `exports`.
fn uses(code: &str, modules: &BTreeSet<String>, exports: &BTreeMap<String, String>) -> BTreeSet<String> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut found = BTreeSet::new();
    let mut name_of = |name: &str| {
        if modules.contains(name) {
            found.insert(name.to_owned());
        } else if let Some(module) = exports.get(name) {
            found.insert(module.clone());
        }
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            name_of(&rest.chars().take_while(|c| ident(*c)).collect::<String>());
            continue;
        };
        // The first name of each item at the group's first level: `crate::{a, b::c, d::{e, f}}` names a, b, d.
        let (mut depth, mut item_start) = (0usize, true);
        let mut chars = group.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if depth == 0 && item_start && ident(c) => {
                    let name: String = group[i..].chars().take_while(|c| ident(*c)).collect();
                    for _ in 1..name.chars().count() {
                        chars.next();
                    }
                    name_of(&name);
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    found
}

/// What the crate root re-exports, by name: `pub use node::{Builder, Switchboard};` maps both to `node`.
fn exports(lib: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for statement in code(lib).split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else { continue };
        let module: String = path.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !modules.contains(&module) {
            continue;
        }
        let names = path.rsplit(['{', ':']).next().unwrap_or_default();
        for name in names.split([',', '}']).map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.rsplit(" as ").next().unwrap_or(name).rsplit("::").next().unwrap_or(name);
            map.insert(name.to_owned(), module.clone());
        }
    }
    map
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
    let exports = exports(&std::fs::read_to_string(src.join("lib.rs")).unwrap(), &modules);
    assert_eq!(exports.get("Switchboard").map(String::as_str), Some("node"), "{exports:?}");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = top(file) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        for to in uses(&code(&text), &modules, &exports) {
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
fn the_circle_check_sees_paths_groups_and_re_exports() {
    let modules: BTreeSet<String> =
        ["node", "http", "wamp", "topic", "cluster", "services", "connection"].map(String::from).into();
    let exports = exports("pub use node::{Builder, Switchboard};\npub use topic::handler::PublishRequest;\n", &modules);
    assert_eq!(exports.get("PublishRequest").map(String::as_str), Some("topic"));
    let code = code(
        "use crate::node::Builder;\nuse crate::{http::upgrade, wamp::{v1, v2}, services};\n\
         use crate::{cluster::redis::connection::X};\nfn f() -> crate::Switchboard {}\n// crate::topic\n",
    );
    let found = uses(&code, &modules, &exports);
    assert_eq!(found, ["cluster", "http", "node", "services", "wamp"].map(String::from).into());
}
