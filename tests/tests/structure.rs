//! The crates' file structure: no file imports a file that (directly or through others) imports
//! it back, within any crate. A module reads top-down: a service imports its future and its
//! config, never the other way round.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// `crates/<name>/src/a/b.rs` → `["a", "b"]`; `mod.rs` and `lib.rs` name their folder.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
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

/// The modules of this crate that `file` (module `at`) imports with `use` outside its tests.
fn imports(text: &str, at: &Module, files: &BTreeSet<Module>) -> BTreeSet<Module> {
    let code = text
        .split("#[cfg(test)]\nmod tests {")
        .next()
        .unwrap()
        .split("#[cfg(test)]\npub(super) mod tests {")
        .next()
        .unwrap();
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        let Some(path) = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|p| line.strip_prefix(p))
        else {
            continue;
        };
        let path: Vec<&str> = path
            .split(['{', ';', ' '])
            .next()
            .unwrap()
            .split("::")
            .filter(|s| !s.is_empty())
            .collect();
        let mut target: Module = match path.first() {
            Some(&"crate") => Vec::new(),
            Some(&"self") => at.clone(),
            Some(&"super") => at[..at.len().saturating_sub(1)].to_vec(),
            Some(first) if files.contains(&[at.clone(), vec![(*first).to_owned()]].concat()) => {
                at.clone()
            }
            _ => continue,
        };
        let rest = match path.first() {
            Some(&"crate" | &"self" | &"super") => &path[1..],
            _ => &path[..],
        };
        let mut rest = rest.iter().peekable();
        while rest.peek() == Some(&&"super") {
            target.pop();
            rest.next();
        }
        target.extend(rest.map(|s| (*s).to_owned()));
        // The longest prefix that is a file of this crate (not the importing file itself).
        while !target.is_empty() && (!files.contains(&target) || target == *at) {
            target.pop();
        }
        if files.contains(&target) && target != *at {
            found.insert(target);
        }
    }
    found
}

fn cycle_from(
    graph: &BTreeMap<Module, BTreeSet<Module>>,
    path: &mut Vec<Module>,
    done: &mut BTreeSet<Module>,
) -> Option<Vec<Module>> {
    let node = path.last().unwrap().clone();
    for next in graph.get(&node).into_iter().flatten() {
        if let Some(start) = path.iter().position(|m| m == next) {
            let mut cycle = path[start..].to_vec();
            cycle.push(next.clone());
            return Some(cycle);
        }
        if done.contains(next) {
            continue;
        }
        path.push(next.clone());
        if let Some(cycle) = cycle_from(graph, path, done) {
            return Some(cycle);
        }
        path.pop();
    }
    done.insert(node);
    None
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut checked = 0;
    let mut cycles = Vec::new();
    for krate in std::fs::read_dir(&crates).unwrap() {
        let src = krate.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let mut paths = Vec::new();
        rust_files(&src, &mut paths);
        let files: BTreeSet<Module> = paths.iter().map(|p| module_of(&src, p)).collect();
        let graph: BTreeMap<Module, BTreeSet<Module>> = paths
            .iter()
            .map(|p| {
                let at = module_of(&src, p);
                let deps = imports(&std::fs::read_to_string(p).unwrap(), &at, &files);
                (at, deps)
            })
            .collect();
        let mut done = BTreeSet::new();
        for start in graph.keys() {
            if let Some(cycle) = cycle_from(&graph, &mut vec![start.clone()], &mut done) {
                let names: Vec<String> = cycle
                    .iter()
                    .map(|m| {
                        if m.is_empty() {
                            "(crate root)".to_owned()
                        } else {
                            m.join("::")
                        }
                    })
                    .collect();
                cycles.push(format!("{}: {}", src.display(), names.join(" -> ")));
                break;
            }
        }
        checked += files.len();
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
    assert!(
        checked > 40,
        "only {checked} files found under {}",
        crates.display()
    );
}
