//! The structure docs/architecture.md describes, checked on the source tree: the top-level
//! modules depend on each other without a cycle, and the library below the application
//! (`cli`, `studies`, `plot`, behind the `cli` feature) never reaches up into it.
//!
//! Dependencies are read from the `crate::<module>` paths of each file, comments and the
//! trailing `#[cfg(test)] mod tests` excluded (a test may use anything).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its line comments and its unit-test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

fn ident(s: &str) -> String {
    s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// The first segments of the `crate::<name>` and `crate::{<name>, …}` paths in `code`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // A use group: the first identifier of each top-level item.
            let (mut depth, mut item) = (0usize, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(ident(&item));
        } else {
            out.insert(ident(after));
        }
        rest = after;
    }
    out.remove("");
    out
}

/// Top-level module → the top-level modules its files name.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|p| p.strip_prefix(&src).unwrap().components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string())
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for p in &files {
        let top = p.strip_prefix(&src).unwrap().components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        let Some(deps) = graph.get_mut(&top) else { continue };
        for name in crate_paths(&code(&std::fs::read_to_string(p).unwrap())) {
            if name != top && modules.contains(&name) {
                deps.insert(name);
            }
        }
    }
    graph
}

/// A cycle through `graph`, if there is one (depth-first search with colours).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(n: &str, g: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    // The check below can fail: a graph with a cycle is reported with the cycle's path.
    let g: BTreeMap<String, BTreeSet<String>> = [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec![])]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(find_cycle(&g), Some(vec!["a".to_string(), "b".into(), "c".into(), "a".into()]));
    let dag: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b", "c"]), ("b", vec!["c"]), ("c", vec![])].into_iter().map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect())).collect();
    assert_eq!(find_cycle(&dag), None);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(crate_paths("use crate::sim::X; crate::io::write(crate::Error)"), names(&["Error", "io", "sim"]));
    assert_eq!(crate_paths("use crate::{ode::{self, Y}, sde, Error};"), names(&["Error", "ode", "sde"]));
    assert!(crate_paths(&code("// crate::sim\nfn f() {}\n#[cfg(test)]\nmod tests { use crate::io; }")).is_empty());
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = module_graph();
    assert!(graph.len() >= 15, "modules found: {:?}", graph.keys());
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module dependency cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn the_library_does_not_reach_into_the_application() {
    let app = ["cli", "studies", "plot"];
    for (module, deps) in module_graph() {
        if app.contains(&module.as_str()) {
            continue;
        }
        let up: Vec<&String> = deps.iter().filter(|d| app.contains(&d.as_str())).collect();
        assert!(up.is_empty(), "library module `{module}` uses the application modules {up:?}");
    }
}
