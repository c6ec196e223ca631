//! No Rust source file of the workspace is over 1,200 lines (issue 9: bounded sizes, enforced by
//! the build; functions are bounded at 120 lines by clippy's `too_many_lines`, denied in the
//! workspace's lints with the threshold in `clippy.toml`).

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 1_200;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_source_file_is_over_1200_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for crate_dir in ["runner", "forensics", "tests"] {
        rust_files(&root.join(crate_dir), &mut files);
    }
    assert!(
        files.len() > 50,
        "found only {} files under {}",
        files.len(),
        root.display()
    );
    let too_long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(
        too_long.is_empty(),
        "split these along their seams (at most {MAX_LINES} lines a file):\n{}",
        too_long.join("\n")
    );
}
