//! Test support for store authors (feature `testing`): the store conformance suite every
//! [`SessionStore`](crate::store::SessionStore) must pass, and store wrappers that count calls,
//! fail, or refuse writes.

pub mod conformance;
pub mod stores;
