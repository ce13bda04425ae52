//! The engine's modules are layers, named in `lib.rs`'s own text: each module imports only from
//! its own layer or those below it, and no import goes round a loop. Read from the source, as
//! rust-analyzer's `tidy` reads its own, so that a new import that breaks the layering fails
//! here rather than in a reader's head.

use std::collections::{BTreeMap, BTreeSet};

const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The layers `lib.rs` lists (`//! 1. ... \`request\`, \`config\` ...`), lowest first.
fn layers(lib: &str) -> Vec<BTreeSet<String>> {
    let mut layers: Vec<BTreeSet<String>> = Vec::new();
    for line in lib.lines().filter_map(|line| line.strip_prefix("//!")) {
        let numbered = line
            .trim_start()
            .split_once(". ")
            .is_some_and(|(number, _)| number.parse::<u32>().is_ok());
        if numbered {
            layers.push(BTreeSet::new());
        } else if !line.starts_with("    ") {
            continue;
        }
        if let Some(layer) = layers.last_mut() {
            layer.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    layers
}

/// What `lib.rs` re-exports, by name: the module each name comes from.
fn exports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let Some((_, block)) = lib.split_once("pub use crate::{") else {
        return names;
    };
    let block = block.split("};").next().unwrap_or_default();
    for (module, items) in top_level(block)
        .iter()
        .filter_map(|item| item.split_once("::"))
    {
        for name in items.trim_matches(|c| c == '{' || c == '}').split(',') {
            names.insert(name.trim().to_owned(), module.to_owned());
        }
    }
    names
}

/// The items of a `use` block at its top level: `a::{b, c}, D, e` as `a::{b, c}`, `D`, `e`.
fn top_level(block: &str) -> Vec<String> {
    let (mut items, mut item, mut depth) = (Vec::new(), String::new(), 0);
    for c in block.chars().chain([',']) {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                let done = std::mem::take(&mut item);
                if !done.trim().is_empty() {
                    items.push(done.trim().to_owned());
                }
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    items
}

/// The modules a module's code names (`crate::x::...`, `use crate::{x::..., Y}`), comments left
/// out, a re-exported name taken as its own module.
fn imports(code: &str, exports: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code: String = code
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let module_of = |name: &str| match name.split_once("::") {
        Some((module, _)) => Some(module.to_owned()),
        None => exports.get(name).cloned(),
    };
    let mut modules = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(block) = rest.strip_prefix('{') {
            let block = block.split("};").next().unwrap_or_default();
            modules.extend(top_level(block).iter().filter_map(|item| module_of(item)));
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            modules.extend(module_of(name.trim_end_matches(':')));
        }
    }
    modules
}

#[test]
fn each_module_imports_only_its_own_layer_and_those_below() {
    let lib = std::fs::read_to_string(format!("{SOURCE}/lib.rs")).expect("lib.rs");
    let layers = layers(&lib);
    let exports = exports(&lib);
    let layer_of = |module: &str| layers.iter().position(|layer| layer.contains(module));
    let mut graph = BTreeMap::new();
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(SOURCE).expect("src") {
        let path = entry.expect("an entry").path();
        let Some(module) = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .filter(|_| path.extension().is_some_and(|ext| ext == "rs"))
            .map(str::to_owned)
        else {
            continue;
        };
        if module == "lib" {
            continue;
        }
        // A module's own files (`verify.rs` and `verify/`) are the module.
        let mut code = std::fs::read_to_string(&path).expect("a module");
        for inner in std::fs::read_dir(format!("{SOURCE}/{module}"))
            .into_iter()
            .flatten()
        {
            code += &std::fs::read_to_string(inner.expect("a file").path()).expect("a file");
        }
        let imported: BTreeSet<String> = imports(&code, &exports)
            .into_iter()
            .filter(|other| *other != module)
            .collect();
        match layer_of(&module) {
            None => problems.push(format!(
                "`{module}` is in no layer: name it in lib.rs's list of layers"
            )),
            Some(own) => {
                for other in &imported {
                    if layer_of(other).is_none_or(|theirs| theirs > own) {
                        problems.push(format!(
                            "`{module}` (layer {}) imports `{other}`, which is built on it",
                            own + 1
                        ));
                    }
                }
            }
        }
        graph.insert(module, imported);
    }
    // A loop within a layer: walk from each module and see whether it comes back.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut next: Vec<&String> = graph[start].iter().collect();
        while let Some(module) = next.pop() {
            if module == start {
                problems.push(format!("`{start}` imports itself through others: a cycle"));
                break;
            }
            if seen.insert(module) {
                next.extend(graph.get(module).into_iter().flatten());
            }
        }
    }
    assert!(layers.len() >= 5, "lib.rs lists {} layers", layers.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
