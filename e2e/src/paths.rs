//! Where the repository and the built binaries are.

use std::path::PathBuf;

/// The repository root (the workspace that holds `e2e/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// Path of a workspace binary (`weft-operator`, `weft-proxy`, ...) built by `cargo build --bins`
/// into the same profile folder as the running test. `WEFT_BIN_DIR` overrides the folder.
///
/// Integration tests of one crate cannot ask cargo for another crate's binaries, so `make e2e`
/// builds them first; a missing binary is a clear panic, not a confusing timeout.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("WEFT_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // target/<profile>/deps/<test-binary> -> target/<profile>
            let exe = std::env::current_exe().expect("current_exe");
            exe.parent()
                .and_then(|deps| deps.parent())
                .expect("test binary lives in target/<profile>/deps")
                .to_path_buf()
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --bins` (make e2e does) or set WEFT_BIN_DIR",
        path.display()
    );
    path
}
