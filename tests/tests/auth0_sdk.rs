//! The official Auth0 Node SDK (`auth0` 7.1.0, pinned in `tests/node/package.json`), unmodified,
//! against the admin example served over https with a generated certificate
//! (`keycard_examples::tls`), trusted through `NODE_EXTRA_CA_CERTS` as a user would.
//!
//! Needs `node` on `PATH` and the SDK installed (`cd tests/node && npm ci`, which `.ci/run` does
//! when node is present, and which this test runs itself when `npm` is there and the SDK is not,
//! bounded to two minutes). Without node (or an SDK it could not install) the test prints why and
//! returns; with both it runs and every assertion holds.

use std::path::{Path, PathBuf};
use std::process::Command;

use keycard::prelude::MemoryStore;
use keycard_core::key::KeyId;
use keycard_core::session::SessionRecord;
use keycard_core::store::SessionStore;
use keycard_examples::admin;
use keycard_examples::tls::{self, TlsSetup};
use keycard_tests::http::{Client, spawn};
use serde_json::{Value, json};

const TYK_SECRET: &str = "tyk-secret-for-the-sdk-test";
const ADMIN_TOKEN: &str = "admin-token-for-the-sdk-test";

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// Why the SDK test cannot run here, if it cannot.
fn missing_node() -> Option<String> {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("`node` is not on PATH".to_owned()),
    }
    let sdk = node_dir().join("node_modules/auth0/package.json");
    if !sdk.exists() {
        install_sdk();
    }
    let Ok(manifest) = std::fs::read_to_string(&sdk) else {
        return Some(format!(
            "the Auth0 SDK is not installed ({} is missing): run `npm ci` in {}",
            sdk.display(),
            node_dir().display()
        ));
    };
    let version: Value = serde_json::from_str(&manifest).expect("the SDK's package.json is JSON");
    assert_eq!(
        version["version"], "7.1.0",
        "tests/node/node_modules holds another auth0 version: run `npm ci` in tests/node"
    );
    None
}

/// `npm ci` in `tests/node` (the lock file pins the SDK), for a checkout where nobody ran it;
/// at most two minutes, then the test reports the SDK missing.
fn install_sdk() {
    let Ok(mut npm) = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(node_dir())
        .spawn()
    else {
        return;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = npm.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = npm.kill();
    let _ = npm.wait();
}

/// A session of `alias` for the raw key `key` (the example hashes keys with plain SHA-256).
async fn seed(store: &MemoryStore, key: &str, alias: &str, meta: Value) -> KeyId {
    let record = SessionRecord::for_key(key).with_alias(alias).metadata(meta);
    let id = record.key_id.clone();
    store.create(record).await.unwrap();
    id
}

#[tokio::test]
async fn the_auth0_node_sdk_drives_the_sessions_api_over_https() {
    if let Some(why) = missing_node() {
        eprintln!("SKIPPED the_auth0_node_sdk_drives_the_sessions_api_over_https: {why}");
        return;
    }
    let store = MemoryStore::new();
    let demo = admin::build(store.clone(), TYK_SECRET, ADMIN_TOKEN).unwrap();
    let cert_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("auth0-sdk-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cert_dir);
    let setup = TlsSetup::development(&cert_dir).unwrap();
    assert!(setup.development);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = listener.local_addr().unwrap();
    tokio::spawn(tls::serve(
        listener,
        setup.acceptor(),
        demo.admin,
        std::future::pending(),
    ));
    let app = Client::new(spawn(demo.app).await);

    let key = "sdk-test-key-alice-0001";
    let id = seed(
        &store,
        key,
        "alice",
        json!({"user_id": "u-alice", "plan": "gold"}),
    )
    .await;
    let other = seed(
        &store,
        "sdk-test-key-alice-0002",
        "alice",
        json!({"user_id": "u-alice"}),
    )
    .await;
    // The session is used once through the layers before the SDK looks at it.
    let bearer = format!("Bearer {key}");
    let seen = app
        .get(
            "/echo",
            &[
                ("authorization", &bearer),
                ("user-agent", "sdk-test-agent/1.0"),
            ],
        )
        .await;
    assert_eq!(seen.status, 200, "{}", seen.text());

    let script = node_dir().join("sessions.js");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(node_dir())
        .env("NODE_EXTRA_CA_CERTS", &setup.cert_path)
        .env("KEYCARD_DOMAIN", admin_addr.to_string())
        .env("KEYCARD_TOKEN", ADMIN_TOKEN)
        .env("SESSION_ID", id.as_str())
        .env("OTHER_SESSION_ID", other.as_str())
        .env("USER_ID", "alice")
        .output()
        .await
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sessions.js failed: {stderr}");
    let results: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("sessions.js printed no JSON ({e}); stderr: {stderr}"));
    let field = |name: &str| -> &Value {
        results
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {results:#}"))
    };

    let get = field("get");
    assert_eq!(get["ok"], true, "{get:#}");
    assert_eq!(get["status"], 200);
    assert_eq!(get["data"]["id"], id.as_str());
    assert_eq!(get["data"]["user_id"], "alice");
    assert_eq!(
        get["data"]["session_metadata"],
        json!({"user_id": "u-alice", "plan": "gold"})
    );
    // The request through the layers was recorded (the example tracks activity).
    assert_eq!(
        get["data"]["device"],
        json!({
            "initial_user_agent": "sdk-test-agent/1.0",
            "initial_ip": "127.0.0.1",
            "last_user_agent": "sdk-test-agent/1.0",
            "last_ip": "127.0.0.1",
        })
    );
    assert!(get["data"]["last_interacted_at"].is_string(), "{get:#}");
    assert_eq!(get["data"]["clients"], json!([]));
    assert_eq!(get["data"]["authentication"], json!({"methods": []}));

    // `update(id)` with no body: Auth0 accepts it and changes nothing.
    let update_empty = field("update_empty");
    assert_eq!(
        (&update_empty["ok"], &update_empty["status"]),
        (&json!(true), &json!(200)),
        "{update_empty:#}"
    );
    assert_eq!(
        update_empty["data"]["session_metadata"],
        get["data"]["session_metadata"]
    );

    let update = field("update");
    assert_eq!(update["status"], 200, "{update:#}");
    assert_eq!(
        update["data"]["session_metadata"],
        json!({"plan": "platinum", "region": "eu"})
    );
    assert_eq!(
        field("get_after_update")["data"]["session_metadata"],
        json!({"plan": "platinum", "region": "eu"})
    );
    let round_trip = field("round_trip");
    assert_eq!(round_trip["status"], 200, "{round_trip:#}");
    assert_eq!(
        round_trip["data"]["session_metadata"],
        json!({"plan": "platinum", "region": "us"})
    );

    // The SDK's pager, one session a page, follows `next` to the end.
    let first = field("list_first_page");
    assert_eq!(first["sessions"].as_array().unwrap().len(), 1, "{first:#}");
    assert_eq!(first["has_next"], true);
    let mut expected = vec![id.as_str(), other.as_str()];
    expected.sort_unstable();
    assert_eq!(field("list_all_ids"), &json!(expected));

    let unauthorized = field("unauthorized");
    assert_eq!(unauthorized["ok"], false);
    assert_eq!(
        unauthorized["name"], "UnauthorizedError",
        "{unauthorized:#}"
    );
    assert_eq!(unauthorized["statusCode"], 401);
    assert_eq!(
        unauthorized["body"],
        json!({
            "statusCode": 401,
            "error": "Unauthorized",
            "message": "Invalid token",
            "attributes": {"error": "Invalid token"},
        })
    );

    let revoke = field("revoke");
    assert_eq!(
        (&revoke["ok"], &revoke["status"]),
        (&json!(true), &json!(202)),
        "{revoke:#}"
    );
    let get_revoked = field("get_revoked");
    assert_eq!(get_revoked["name"], "NotFoundError", "{get_revoked:#}");
    assert_eq!(
        get_revoked["body"],
        json!({"statusCode": 404, "error": "Not Found", "message": "The session does not exist"})
    );
    let revoke_revoked = field("revoke_revoked");
    assert_eq!(
        revoke_revoked["name"], "NotFoundError",
        "{revoke_revoked:#}"
    );
    assert!(store.load(&id).await.unwrap().is_none());

    let delete = field("delete");
    assert_eq!(
        (&delete["ok"], &delete["status"]),
        (&json!(true), &json!(202)),
        "{delete:#}"
    );
    // Auth0 documents no 404 for DELETE /api/v2/sessions/{id} (202, 400, 401, 403, 429 only;
    // the SDK's `sessions.delete` throws no NotFoundError): deleting a deleted session is 202.
    let delete_deleted = field("delete_deleted");
    assert_eq!(
        (&delete_deleted["ok"], &delete_deleted["status"]),
        (&json!(true), &json!(202)),
        "{delete_deleted:#}"
    );
    let delete_user = field("delete_user");
    assert_eq!(delete_user["status"], 202, "{delete_user:#}");
}
