//! The core's module graph has no cycles, and the owners of state never reach into `node`.
//!
//! Reads `src/**/*.rs`, takes every `crate::<module>` path in code (comments are skipped, so doc
//! links do not count) as an edge from the file's top-level module to `<module>`, and fails on any
//! cycle. A file under `src/<m>/` belongs to `<m>`: `node/*.rs` are parts of `node`. A cycle is what
//! let every concern reach into every other; an owner that imports `node` could do so again.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Edges between top-level modules: `from -> {to}`.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Top-level modules that own state (or are leaves beneath the owners): they must not import `node`.
const OWNERS: &[&str] = &[
    "replay",
    "rate",
    "connections",
    "inbox",
    "outbox",
    "trust",
    "shards",
    "memory",
    "discovery",
    "message",
    "command",
    "spawn",
    "healing",
    "anchor",
    "relay",
];

/// What a sans-IO core never names outside its tests: sockets, files, threads, the environment, clocks
/// and OS randomness come in as inputs instead. (`core::net` address types are plain data.)
const IO_PATHS: &[&str] = &[
    "std::net",
    "std::fs",
    "std::thread",
    "std::env",
    "std::process",
    "std::time::Instant",
    "std::time::SystemTime",
    "Instant::now",
    "SystemTime::now",
    "OsRng",
    "thread_rng",
    "getrandom",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for the crate root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(stem) => Some(stem.to_owned()),
        None => Some(first),
    }
}

/// The modules a source text names as `crate::<m>` or inside `crate::{<m>, ..}`, outside comments.
fn referenced_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        // A trailing comment starts at ` // ` (a URL in a string has no space before its `//`).
        let mut rest = code.split(" // ").next().unwrap_or(code);
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    out.extend(ident(item.trim()));
                }
            } else {
                out.extend(ident(after));
            }
            rest = after;
        }
    }
    out
}

/// The leading lower-case identifier of `s` (a module name; types and macros start upper-case).
fn ident(s: &str) -> Option<String> {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    let name = &s[..end];
    (!name.is_empty() && name.starts_with(|c: char| c.is_ascii_lowercase()) && name != "self").then(|| name.to_owned())
}

fn core_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else { continue };
        let text = fs::read_to_string(&file).expect("source is readable");
        let edges = graph.entry(from.clone()).or_default();
        edges.extend(referenced_modules(&text).into_iter().filter(|to| *to != from));
    }
    graph
}

/// One cycle of the graph, as the path that closes it, if there is any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(g: &Graph, m: &str, marks: &mut BTreeMap<String, Mark>, path: &mut Vec<String>) -> Option<Vec<String>> {
        match marks.get(m) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|p| p == m).expect("an open module is on the path");
                let mut cycle = path[start..].to_vec();
                cycle.push(m.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(m.to_owned(), Mark::Open);
        path.push(m.to_owned());
        for next in g.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(g, next, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(m.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph.keys().find_map(|m| visit(graph, m, &mut marks, &mut Vec::new()))
}

#[test]
fn the_core_module_graph_has_no_cycle() {
    let graph = core_graph();
    // The scan must see the crate: a parser that found nothing would pass vacuously.
    assert!(graph.get("node").is_some_and(|e| e.contains("replay")), "scan found node -> replay: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle in proto-core: {}", cycle.join(" -> "));
    }
}

#[test]
fn owners_never_import_node() {
    let graph = core_graph();
    for owner in OWNERS {
        let edges = graph.get(*owner).unwrap_or_else(|| panic!("no module {owner}"));
        assert!(!edges.contains("node"), "{owner} imports node; it should take arguments and return changes");
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_only_a_cycle() {
    let mut g = Graph::new();
    let edge = |g: &mut Graph, a: &str, b: &str| {
        g.entry(a.to_owned()).or_default().insert(b.to_owned());
        g.entry(b.to_owned()).or_default();
    };
    edge(&mut g, "node", "trust");
    edge(&mut g, "trust", "store");
    edge(&mut g, "node", "store");
    assert_eq!(find_cycle(&g), None);
    edge(&mut g, "store", "node");
    let cycle = find_cycle(&g).expect("node -> trust -> store -> node");
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.contains(&"store".to_owned()) && cycle.contains(&"node".to_owned()));
}

#[test]
fn references_are_read_from_code_not_comments() {
    let text =
        "//! See [`crate::node::Node`].\nuse crate::{store::Change, wire};\nlet x = crate::limits::X; // crate::time\n";
    let found: Vec<String> = referenced_modules(text).into_iter().collect();
    assert_eq!(found, ["limits", "store", "wire"]);
}

/// The code of a core file, without its test module (`#[cfg(test)]` sits at the end of a file) and
/// without comments.
fn production_code(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_core_does_no_io_outside_its_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for file in files.iter().filter(|f| f.file_name().is_some_and(|n| n != "tests.rs")) {
        let code = production_code(&fs::read_to_string(file).expect("readable"));
        for path in IO_PATHS.iter().filter(|p| code.contains(*p)) {
            found.push(format!("{}: {path}", file.strip_prefix(&src).unwrap_or(file).display()));
        }
    }
    assert!(found.is_empty(), "I/O in the sans-IO core: {found:?}");
}

#[test]
fn the_io_check_sees_io_and_ignores_tests_and_comments() {
    assert!(production_code("use std::net::TcpStream;").contains("std::net"));
    assert!(!production_code("// std::net is not used\nfn a() {}").contains("std::net"));
    assert!(!production_code("fn a() {}\n#[cfg(test)]\nmod t { use std::fs; }").contains("std::fs"));
}
