//! Nothing here: this package's tests run the frameworks' own store test
//! suites against sessiond. `build.rs` copies them out of the published
//! crates cargo downloaded (tower-sessions 0.15.0's `tests/common/mod.rs`,
//! actix-session 0.11.0's `test_helpers` module) into `OUT_DIR`, so none of
//! their code is in this repository; `tests/` runs them.
