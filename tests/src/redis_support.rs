//! Redis for tests: the shared server (`REDIS_URL`), unique key prefixes, and throwaway
//! `redis-server` processes (single servers and clusters) on free loopback ports that are killed
//! and cleaned up when their guard drops.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keycard_core::key::{ApiKey, KeyId};
use keycard_core::metadata::MetadataDelta;
use keycard_redis::{RedisStore, RedisStoreBuilder};

/// The key id of the API key `name`.
pub fn key_id(name: &str) -> KeyId {
    KeyId::of(&ApiKey::new(name))
}

/// A delta that sets one metadata entry.
pub fn set_one(key: &str, value: serde_json::Value) -> MetadataDelta {
    let mut delta = MetadataDelta::new();
    delta.set(key, value);
    delta
}

/// The URL of the shared Redis: `REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "kc-test-{test}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A builder for the shared Redis with a unique prefix and short timeouts.
///
/// # Panics
/// If `REDIS_URL` is not a valid URL.
pub fn shared_store(test: &str) -> RedisStoreBuilder {
    RedisStore::url(&redis_url())
        .expect("REDIS_URL is a valid redis:// URL")
        .prefix(unique_prefix(test))
}

/// Connects a builder, failing with instructions when Redis is not there.
///
/// # Panics
/// If the store cannot connect.
pub async fn connect(builder: RedisStoreBuilder) -> RedisStore {
    match builder.connect().await {
        Ok(store) => store,
        Err(error) => panic!(
            "cannot connect to Redis ({error:?}). Start it with `redis-server --daemonize yes \
             --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no` (install: \
             `apt-get install -y redis-server`) or set REDIS_URL"
        ),
    }
}

/// Fails the test, with the install command, when `redis-server` or `redis-cli` is missing.
///
/// # Panics
/// When a binary is missing.
pub fn require_redis_binaries() {
    for binary in ["redis-server", "redis-cli"] {
        let found = Command::new(binary)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{binary}` is not on PATH: install it with `apt-get install -y redis-server`"
        );
    }
}

/// A loopback port that is free now, whose cluster bus port (+10000) is free too.
///
/// # Panics
/// If no such port is found in 200 tries.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port pair found");
}

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "keycard-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// Runs `redis-cli` against a loopback port.
///
/// # Panics
/// If `redis-cli` cannot be started.
pub fn redis_cli(port: u16, args: &[&str]) -> Output {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli (apt-get install -y redis-server)")
}

/// Polls `ready` every 50 ms (blocking the thread) until it holds.
///
/// # Panics
/// When it does not hold within `limit`.
pub fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what}: not ready after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The text of a `redis-cli` reply (stdout, lossy UTF-8, trimmed).
pub fn cli_text(port: u16, args: &[&str]) -> String {
    String::from_utf8_lossy(&redis_cli(port, args).stdout)
        .trim()
        .to_owned()
}

/// One `redis-server` process on a loopback port; killed (and its directory removed) on drop.
#[derive(Debug)]
pub struct RedisServer {
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    sentinel: bool,
    /// TLS only (`--port 0`): `redis-cli` needs `--tls --cacert <dir>/ca.pem` to reach it.
    tls: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server without persistence on a free port.
    ///
    /// # Panics
    /// If `redis-server` is missing or does not answer within 10 s.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server on a free port with extra `redis-server` arguments (e.g. `--appendonly
    /// yes`); its working directory is a fresh temp dir.
    ///
    /// # Panics
    /// If `redis-server` is missing or does not answer within 10 s.
    pub fn start_with(extra: &[&str]) -> Self {
        require_redis_binaries();
        let server = Self {
            port: free_port(),
            dir: temp_dir("redis"),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            sentinel: false,
            tls: false,
            child: None,
        };
        server.write_config("");
        server.started()
    }

    /// Starts a server that speaks TLS only, on a free port, with the PEM certificate, key and
    /// CA given (written to its directory); clients need no certificate of their own.
    ///
    /// # Panics
    /// If `redis-server` is missing, lacks TLS, or does not answer within 10 s.
    pub fn start_tls(cert: &str, key: &str, ca: &str) -> Self {
        require_redis_binaries();
        let dir = temp_dir("redis-tls");
        let mut extra = Vec::new();
        for (name, pem) in [("cert", cert), ("key", key), ("ca-cert", ca)] {
            let file = dir.join(format!("{name}.pem"));
            std::fs::write(&file, pem).expect("write a PEM file");
            extra.push(format!("--tls-{name}-file"));
            extra.push(file.to_str().expect("utf-8 temp dir").to_owned());
        }
        let port = free_port();
        extra.extend(["--tls-auth-clients".into(), "no".into()]);
        // After `--port <port>` on the command line, so that the plain port is off.
        extra.extend([
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
        ]);
        let server = Self {
            port,
            dir,
            extra,
            sentinel: false,
            tls: true,
            child: None,
        };
        server.write_config("");
        server.started()
    }

    /// Runs `redis-cli` against this server (over TLS when it speaks only TLS).
    ///
    /// # Panics
    /// If `redis-cli` cannot be started.
    pub fn cli(&self, args: &[&str]) -> Output {
        if !self.tls {
            return redis_cli(self.port, args);
        }
        let ca = self.dir.join("ca-cert.pem");
        let mut all = vec!["--tls", "--cacert", ca.to_str().expect("utf-8 temp dir")];
        all.extend(args);
        redis_cli(self.port, &all)
    }

    /// Starts a sentinel (`redis-server <conf> --sentinel`) on a free port whose configuration
    /// file holds `config` (after `port`, `bind` and `dir`). Sentinel rewrites the file with what
    /// it learns, so a [`restart`](Self::restart) keeps its state.
    ///
    /// # Panics
    /// If `redis-server` is missing or the sentinel does not answer within 10 s.
    pub fn start_sentinel(config: &str) -> Self {
        require_redis_binaries();
        let server = Self {
            port: free_port(),
            dir: temp_dir("sentinel"),
            extra: Vec::new(),
            sentinel: true,
            tls: false,
            child: None,
        };
        let dir = server.dir.to_str().expect("utf-8 temp dir");
        server.write_config(&format!(
            "port {}\nbind 127.0.0.1\ndir \"{dir}\"\n{config}\n",
            server.port
        ));
        server.started()
    }

    /// The configuration file: an empty one for a data server, so that `CONFIG REWRITE` (which
    /// Sentinel sends when it reconfigures a server) has a file to write.
    fn config_file(&self) -> PathBuf {
        self.dir.join(if self.sentinel {
            "sentinel.conf"
        } else {
            "redis.conf"
        })
    }

    fn write_config(&self, text: &str) {
        std::fs::write(self.config_file(), text).expect("write a redis config file");
    }

    fn started(mut self) -> Self {
        self.restart();
        self
    }

    /// (Re)starts the process on the same port and directory, waiting until it answers `PING`.
    ///
    /// # Panics
    /// If it does not answer within 10 s.
    pub fn restart(&mut self) {
        self.kill();
        let mut command = Command::new("redis-server");
        command.arg(self.config_file());
        if self.sentinel {
            command.arg("--sentinel");
        } else {
            command
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--dir", self.dir.to_str().expect("utf-8 temp dir")])
                .args(&self.extra);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install -y redis-server)");
        self.child = Some(child);
        wait_until(
            &format!("redis-server on {}", self.port),
            Duration::from_secs(10),
            || self.cli(&["ping"]).stdout.starts_with(b"PONG"),
        );
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freezes the process (`SIGSTOP`): connections stay open, nothing answers.
    ///
    /// # Panics
    /// If the process is not running.
    pub fn pause(&self) {
        signal(self.pid().expect("server running"), "STOP");
    }

    /// Thaws a paused process (`SIGCONT`).
    ///
    /// # Panics
    /// If the process is not running.
    pub fn resume(&self) {
        signal(self.pid().expect("server running"), "CONT");
    }

    /// Kills the process (`SIGKILL`, also when paused) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// A local Redis Cluster of `primaries` primaries with `replicas` replicas each, on free loopback
/// ports, with `cluster-node-timeout 2000`. Every process is killed and every directory removed
/// when it drops.
#[derive(Debug)]
pub struct RedisCluster {
    /// Its nodes, primaries first (as created; roles change on failover).
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the processes, creates the cluster and waits until every node reports it healthy.
    ///
    /// # Panics
    /// If `redis-server`/`redis-cli` are missing or the cluster is not up within 30 s.
    pub fn start(primaries: usize, replicas: usize) -> Self {
        let count = primaries * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args: Vec<&str> = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        let replicas_arg = replicas.to_string();
        args.extend(["--cluster-replicas", &replicas_arg, "--cluster-yes"]);
        let out = redis_cli(nodes[0].port, &args);
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        for node in &cluster.nodes {
            let port = node.port;
            wait_until(
                &format!("cluster node {port}"),
                Duration::from_secs(30),
                || {
                    let info = redis_cli(port, &["cluster", "info"]).stdout;
                    let info = String::from_utf8_lossy(&info);
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                },
            );
        }
        // Replicas must have synced before a failover can promote them.
        if replicas > 0 {
            for node in &cluster.nodes {
                let port = node.port;
                wait_until(
                    &format!("replication on {port}"),
                    Duration::from_secs(30),
                    || {
                        let info = redis_cli(port, &["info", "replication"]).stdout;
                        let info = String::from_utf8_lossy(&info);
                        info.contains("role:master") || info.contains("master_link_status:up")
                    },
                );
            }
        }
        cluster
    }

    /// `(host, port)` of every node, for [`RedisStore::cluster`].
    pub fn hosts(&self) -> Vec<(String, u16)> {
        self.nodes
            .iter()
            .map(|n| ("127.0.0.1".to_owned(), n.port))
            .collect()
    }

    /// The index in `nodes` of the current primary serving `slot`.
    ///
    /// # Panics
    /// If no node reports a primary for the slot.
    pub fn primary_of_slot(&self, slot: u16) -> usize {
        for node in &self.nodes {
            let out = redis_cli(node.port, &["cluster", "nodes"]);
            if !out.status.success() {
                continue;
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                    continue;
                }
                let owns = fields[8..].iter().any(|range| {
                    let mut ends = range.split('-').map(|n| n.parse::<u16>().ok());
                    match (ends.next().flatten(), ends.next()) {
                        (Some(a), Some(Some(b))) => (a..=b).contains(&slot),
                        (Some(a), None) => a == slot,
                        _ => false,
                    }
                });
                let port = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse::<u16>().ok());
                if let (true, Some(port)) = (owns, port)
                    && let Some(i) = self.nodes.iter().position(|n| n.port == port)
                {
                    return i;
                }
            }
        }
        panic!("no primary found for slot {slot}");
    }
}

/// Whether something listens on a loopback port.
pub fn is_listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The replies of `SENTINEL MASTER <service>` on a sentinel, as field → value (empty when the
/// sentinel does not answer).
fn sentinel_master_fields(port: u16, service: &str) -> std::collections::HashMap<String, String> {
    let text = cli_text(port, &["sentinel", "master", service]);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .chunks_exact(2)
        .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
        .collect()
}

/// A Redis Sentinel deployment on free loopback ports: a primary, its replicas and the sentinels
/// monitoring it as [`service`](Self::service) (quorum: a majority of the sentinels; a primary is
/// considered down after 1 s without replies). Every process is killed and every directory
/// removed when it drops, also when the test panics.
#[derive(Debug)]
pub struct RedisSentinel {
    /// The data servers, the initial primary first (roles change on failover).
    pub servers: Vec<RedisServer>,
    /// The sentinels.
    pub sentinels: Vec<RedisServer>,
    /// The name the sentinels monitor the primary under.
    pub service: String,
}

impl RedisSentinel {
    /// Starts the primary and `replicas` replicas, waits until they are in sync, then starts
    /// `sentinels` sentinels and waits until each one knows every replica and every other
    /// sentinel (so that a failover can start at once).
    ///
    /// # Panics
    /// If the binaries are missing or the deployment is not ready within 30 s.
    pub fn start(replicas: usize, sentinels: usize) -> Self {
        assert!(sentinels > 0, "a sentinel deployment needs a sentinel");
        let service = "keycard-primary".to_owned();
        // A replica (re)joining syncs at once rather than after the default 5 s of waiting for
        // more replicas to share a diskless transfer.
        let sync_now = ["--repl-diskless-sync-delay", "0"];
        let primary = RedisServer::start_with(&sync_now);
        let primary_port = primary.port.to_string();
        let mut servers = vec![primary];
        for _ in 0..replicas {
            let mut args = vec!["--replicaof", "127.0.0.1", &primary_port];
            args.extend(sync_now);
            servers.push(RedisServer::start_with(&args));
        }
        for replica in &servers[1..] {
            let port = replica.port;
            wait_until(
                &format!("replica on {port} in sync"),
                Duration::from_secs(30),
                || cli_text(port, &["info", "replication"]).contains("master_link_status:up"),
            );
        }
        let quorum = sentinels / 2 + 1;
        let config = format!(
            "sentinel monitor {service} 127.0.0.1 {primary_port} {quorum}\n\
             sentinel down-after-milliseconds {service} 1000\n\
             sentinel failover-timeout {service} 6000\n\
             sentinel parallel-syncs {service} 1"
        );
        let sentinels: Vec<RedisServer> = (0..sentinels)
            .map(|_| RedisServer::start_sentinel(&config))
            .collect();
        let deployment = Self {
            servers,
            sentinels,
            service,
        };
        let others = (deployment.sentinels.len() - 1).to_string();
        let replicas = replicas.to_string();
        for sentinel in &deployment.sentinels {
            let port = sentinel.port;
            wait_until(
                &format!("sentinel on {port} knows the deployment"),
                Duration::from_secs(30),
                || {
                    let fields = sentinel_master_fields(port, &deployment.service);
                    let field = |name: &str| fields.get(name).map(String::as_str);
                    field("flags") == Some("master")
                        && field("num-slaves") == Some(replicas.as_str())
                        && field("num-other-sentinels") == Some(others.as_str())
                },
            );
        }
        deployment
    }

    /// `(host, port)` of every sentinel, for [`RedisStore::sentinel`].
    pub fn hosts(&self) -> Vec<(String, u16)> {
        self.sentinels
            .iter()
            .map(|s| ("127.0.0.1".to_owned(), s.port))
            .collect()
    }

    /// The primary's port as the sentinel `sentinel` reports it (`None` when it does not answer).
    pub fn primary_port_by(&self, sentinel: usize) -> Option<u16> {
        let port = self.sentinels[sentinel].port;
        let text = cli_text(
            port,
            &["sentinel", "get-master-addr-by-name", &self.service],
        );
        text.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// The index in `servers` of the server listening on `port`.
    ///
    /// # Panics
    /// If none does.
    pub fn server_on(&self, port: u16) -> usize {
        self.servers
            .iter()
            .position(|s| s.port == port)
            .unwrap_or_else(|| panic!("no server of the deployment on port {port}"))
    }

    /// Asks the first sentinel for a failover (`SENTINEL FAILOVER`): a replica is promoted and
    /// the old primary becomes its replica, without waiting for the primary to fail.
    ///
    /// # Panics
    /// If the sentinel refuses.
    pub fn failover(&self) {
        let reply = cli_text(
            self.sentinels[0].port,
            &["sentinel", "failover", &self.service],
        );
        assert_eq!(reply, "OK", "SENTINEL FAILOVER refused");
    }

    /// Waits until every sentinel reports a primary other than the server on `old` and that
    /// server says it is a primary (`role:master`); returns its port.
    ///
    /// # Panics
    /// If that does not happen within `limit`.
    pub fn wait_for_new_primary(&self, old: u16, limit: Duration) -> u16 {
        let mut new = None;
        wait_until("a new primary", limit, || {
            new = self.new_primary(old);
            new.is_some()
        });
        new.expect("a new primary")
    }

    /// The port of the new primary when every sentinel reports one other than the server on
    /// `old` and it says it is a primary (`role:master`); `None` until then.
    pub fn new_primary(&self, old: u16) -> Option<u16> {
        let reported: Vec<Option<u16>> = (0..self.sentinels.len())
            .map(|s| self.primary_port_by(s))
            .collect();
        let new = reported[0].filter(|&p| p != old)?;
        let agreed = reported.iter().all(|r| *r == Some(new))
            && cli_text(new, &["info", "replication"]).contains("role:master");
        agreed.then_some(new)
    }
}
