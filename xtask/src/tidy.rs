//! Tests of the tree itself, as rust-analyzer's `tidy` tests its own: what ARCHITECTURE.md's code
//! map says of the crates stays true as files come and go.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The code map's sections on a crate or on xtask: the folder each is about, and its text.
fn sections(map: &str) -> Vec<(String, &str)> {
    map.split("\n### `")
        .skip(1)
        .filter_map(|section| {
            let (folder, _) = section.split_once('`')?;
            let folder = folder.trim_end_matches('/');
            (folder.starts_with("crates/") || folder == "xtask")
                .then(|| (folder.to_owned(), section))
        })
        .collect()
}

/// The `.rs` files under `dir`, relative to it.
fn sources(dir: &Path, under: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, under, found);
        } else if path.extension().is_some_and(|ext| ext == "rs")
            && let Ok(relative) = path.strip_prefix(under)
        {
            found.push(relative.display().to_string());
        }
    }
}

#[test]
fn the_code_map_names_every_module_and_only_files_that_exist() {
    let root = root();
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut problems = Vec::new();
    let sections = sections(&map);
    for (folder, text) in &sections {
        let dir = root.join(folder);
        for named in text
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|token| token.ends_with(".rs") && !token.contains(char::is_whitespace))
        {
            let exists = [
                dir.join("src").join(named),
                dir.join(named),
                root.join(named),
            ]
            .iter()
            .any(|path| path.exists());
            if !exists {
                problems.push(format!(
                    "ARCHITECTURE.md's section on {folder} names `{named}`, which is not there"
                ));
            }
        }
        let mut found = Vec::new();
        sources(&dir.join("src"), &dir.join("src"), &mut found);
        for file in found {
            if file != "lib.rs" && file != "main.rs" && !text.contains(&format!("`{file}`")) {
                problems.push(format!(
                    "ARCHITECTURE.md's section on {folder} does not name src/{file}: say what it owns"
                ));
            }
        }
    }
    // Every crate has its section.
    for entry in std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .flatten()
    {
        let folder = format!("crates/{}", entry.file_name().to_string_lossy());
        if !sections.iter().any(|(known, _)| *known == folder) {
            problems.push(format!("ARCHITECTURE.md has no section on {folder}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
