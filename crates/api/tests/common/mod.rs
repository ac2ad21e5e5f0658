//! What the API's test binaries share: the models, loaded once per binary, and fresh data
//! dirs.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use facerec::FaceEngine;

/// The real models from `models/`, loaded once and shared by every server of the binary.
pub fn engine() -> Arc<FaceEngine> {
    static ENGINE: OnceLock<Arc<FaceEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            Arc::new(FaceEngine::from_dir(facerec_fixtures::models_dir()).expect("loading models"))
        })
        .clone()
}

/// A data dir of its own for one server (removed first if a previous run left it; made by the
/// service).
pub fn fresh_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "facerec-api-test-{}-{n}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
