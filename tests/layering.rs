//! The layers the crate documents (src/lib.rs, "Layout") hold: every `crate::` path in a
//! module names a module of a lower layer, or its own.

use std::path::Path;

/// Top-level modules by layer, lowest first; a module may use modules of lower layers.
const LAYERS: &[&[&str]] = &[
    &["routing", "metrics"],
    &["config"],
    &["net"],
    &["backend"],
    &["health"],
    &["cluster"],
    &["handoff"],
    &["rebalance"],
    &["proxy", "node"],
    &["admin"],
    &["instance"],
    &["cli"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_run_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs");
        let Some(own) = layer(module) else {
            assert!(
                ["lib", "main"].contains(&module),
                "{module} is in no layer: add it to LAYERS and to the Layout in src/lib.rs"
            );
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        // Code only: comments may mention any module.
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (at, _) in code.match_indices("crate::") {
            let used: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            checked += 1;
            match layer(&used) {
                Some(theirs) if theirs > own => {
                    wrong.push(format!("{}: {module} uses {used}", relative.display()))
                }
                None if used != "lock" => wrong.push(format!(
                    "{}: crate::{used} is in no layer",
                    relative.display()
                )),
                _ => {}
            }
        }
    }
    assert!(checked > 100, "only {checked} paths found");
    assert!(
        wrong.is_empty(),
        "imports running up the layers:\n{}",
        wrong.join("\n")
    );
}
