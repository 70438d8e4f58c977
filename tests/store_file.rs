//! The shared store suite on the file store (`file:PATH` in a tempdir).

mod common;

use std::sync::Arc;

use common::store_suite::{self, Factory};
use roster::store::StateStore;
use roster::store::file::FileStore;

/// A new, empty file store in its own tempdir; the tempdir lives as long as
/// the factory does.
fn fresh_file_store() -> Factory {
    let dir = Arc::new(tempfile::tempdir().expect("create a tempdir"));
    let path = dir.path().join("state").join("state.json");
    Box::new(move || {
        let _keep = &dir;
        Box::new(FileStore::new(path.clone())) as Box<dyn StateStore>
    })
}

#[test]
fn file_store_passes_the_shared_suite() {
    store_suite::run_all(&fresh_file_store);
}

#[test]
fn file_store_reads_through_open_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file:{}", dir.path().join("s.json").display());
    let store = roster::store::open(&url, &Default::default()).expect("open file: URL");
    assert_eq!(store.info().kind, "file");
    assert_eq!(store.read().expect("read"), Default::default());
}
