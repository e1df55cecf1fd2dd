//! What several black-box tests share.

use std::path::{Path, PathBuf};

/// KubeRay v1.3.0's sample manifests (`../shared/kuberay-v1.3.0/samples`, sub-folders included), sorted.
pub fn kuberay_samples() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(dir).expect("samples dir").map(|e| e.expect("entry").path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "yaml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/kuberay-v1.3.0/samples"), &mut out);
    out
}
