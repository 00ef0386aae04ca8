//! Embeds the guest SDK (`sdk/`) and the policy WIT (`wit/`) as they are at build time, for
//! `rebound policy new`: the crate it writes gets them as a path dependency, so it builds
//! anywhere (the SDK is not on crates.io). Every file is listed, none is named here, so a
//! change of the SDK or the WIT is picked up by the next build without touching this file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let mut files = Vec::new();
    for top in ["sdk", "wit"] {
        collect(&root, &root.join(top), &mut files);
    }
    files.sort();
    let mut code = String::from(
        "/// The SDK and WIT files: (path relative to the repository, contents).\n\
         pub(crate) const FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, abs) in &files {
        println!("cargo:rerun-if-changed={}", abs.display());
        let _ = writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        );
    }
    code.push_str("];\n");
    // The directories too, so an added file is noticed.
    for dir in ["sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    std::fs::write(out.join("policy_template_files.rs"), code).expect("writing the file list");
}

/// Every file below `dir` but hidden ones and build output (`target/`).
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "__pycache__" {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
}
