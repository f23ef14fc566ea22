//! Audit events: one `keycard::audit` event per change, with who, what and which metadata keys —
//! never a secret, a raw key or a metadata value.

use keycard_core::key::KeyId;
use keycard_core::metadata::Metadata;

/// What a change did to a session's metadata: the keys it set and whether every other key was
/// dropped (a replace or an eviction).
pub(crate) struct MetadataChange<'a> {
    pub(crate) keys: Vec<&'a str>,
    pub(crate) replaced: bool,
}

impl<'a> MetadataChange<'a> {
    /// The whole map was replaced by (or, for a delete, removed with) `metadata`.
    pub(crate) fn replaced(metadata: &'a Metadata) -> Self {
        Self {
            keys: metadata.keys().map(String::as_str).collect(),
            replaced: true,
        }
    }
}

/// A session was created, replaced, patched or deleted.
pub(crate) fn session(actor: &str, action: &str, key_id: &KeyId, change: &MetadataChange<'_>) {
    tracing::info!(
        target: "keycard::audit",
        actor,
        action,
        session = key_id.short(),
        metadata_keys = ?change.keys,
        metadata_replaced = change.replaced,
        "session {action}"
    );
}

/// A policy was created, replaced or deleted.
pub(crate) fn policy(actor: &str, action: &str, id: &str, metadata: &Metadata) {
    let keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
    tracing::info!(
        target: "keycard::audit",
        actor,
        action,
        policy = id,
        metadata_keys = ?keys,
        "policy {action}"
    );
}
