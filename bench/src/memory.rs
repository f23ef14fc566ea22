//! Bytes per in-memory session: resident memory before and after filling a `MemoryStore` with
//! sessions of 5 metadata entries.

use keycard::prelude::*;
use keycard::session::SessionRecord;
use serde_json::json;

/// Resident set size in bytes, from `/proc/self/statm` (Linux).
fn rss_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("unexpected /proc/self/statm")?
        .parse()?;
    Ok(pages * 4096)
}

pub(crate) fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let sessions: usize = match args {
        [] => 1_000_000,
        [flag, n] if flag == "--sessions" => n.parse()?,
        _ => return Err("usage: loadtest memory [--sessions N]".into()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(async move {
        let store = MemoryStore::new();
        let before = rss_bytes()?;
        for i in 0..sessions {
            let meta = json!({
                "user_id": format!("u-{i:08}"), "tenant_id": "acme-corp",
                "plan": "gold", "shard": "eu-2", "region": "eu-west-1"
            });
            let session = SessionRecord::for_key(&format!("key-{i}"))
                .metadata(meta)
                .with_alias(format!("user-{i}"));
            store.create(session).await?;
        }
        let after = rss_bytes()?;
        let per_session = (after.saturating_sub(before)) as f64 / sessions as f64;
        println!(
            "memory: {sessions} sessions (5 metadata entries, alias, key id): RSS +{:.1} MiB = {per_session:.0} bytes per session",
            (after.saturating_sub(before)) as f64 / 1048576.0,
        );
        assert_eq!(store.len(), sessions);
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
