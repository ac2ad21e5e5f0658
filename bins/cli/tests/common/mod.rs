//! What the CLI's test binaries share: running the built `facerec` and scratch folders.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built `facerec` with the real models and `args`.
pub fn facerec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facerec"))
        .arg("--models")
        .arg(facerec_fixtures::models_dir())
        .args(args)
        .output()
        .expect("running facerec")
}

/// A fresh folder under the system temp dir, removed first if a previous run left it.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("facerec-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `bytes` to `dir/file`, making the folders on the way.
pub fn write(dir: &Path, file: &str, bytes: &[u8]) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}
