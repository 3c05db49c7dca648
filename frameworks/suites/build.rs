//! Copies the frameworks' store test suites out of the crates cargo has
//! downloaded for this package's dependencies into `OUT_DIR`:
//!
//! - `tower_route_tests.rs`: tower-sessions 0.15.0's `tests/common/mod.rs`,
//!   whose `route_tests!` macro holds its 13 HTTP tests;
//! - `actix_acceptance.rs`: the `test_helpers` module at the end of
//!   actix-session 0.11.0's `src/lib.rs`, with `acceptance_test_suite`.
//!
//! Both are dependencies of this package, so cargo has unpacked them under
//! `$CARGO_HOME/registry/src/` before this script runs.

use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let tower = find("tower-sessions-0.15.0");
    let actix = find("actix-session-0.11.0");

    let common = tower.join("tests/common/mod.rs");
    println!("cargo:rerun-if-changed={}", common.display());
    let text = read(&common);
    assert!(text.contains("macro_rules! route_tests"), "{} has no route_tests! macro", common.display());
    write(&out.join("tower_route_tests.rs"), &text);

    let lib = actix.join("src/lib.rs");
    println!("cargo:rerun-if-changed={}", lib.display());
    let text = read(&lib);
    let start = text.find("pub mod test_helpers {").unwrap_or_else(|| panic!("{} has no test_helpers", lib.display()));
    // The module is the file's last item; the tests compile it whole, so a
    // layout that ever differs fails to build rather than passing short.
    assert!(
        text[start..].contains("pub async fn acceptance_test_suite"),
        "no acceptance_test_suite in {}",
        lib.display()
    );
    write(&out.join("actix_acceptance.rs"), &text[start..]);
    println!("cargo:rerun-if-changed=build.rs");
}

/// The unpacked sources of a registry crate, `name-version`.
fn find(dir_name: &str) -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registry = cargo_home.join("registry/src");
    let found = std::fs::read_dir(&registry)
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| index.path().join(dir_name))
        .find(|p| p.is_dir());
    found.unwrap_or_else(|| panic!("{dir_name} is not unpacked under {}: run `cargo fetch`", registry.display()))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
