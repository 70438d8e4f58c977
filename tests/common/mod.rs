//! Test helpers shared by the store test binaries: the backend-agnostic
//! `StateStore` suite and the real-etcd harness. Test-only: never mocks a store.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod connectors;
pub mod etcd;
pub mod postgres;
pub mod slapd;
pub mod store_suite;
