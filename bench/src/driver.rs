//! The `run` command: start each server, drive it with wrk, collect, compare.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::{BENCH_KEY, Config};

type Error = Box<dyn std::error::Error>;

/// Which requests wrk sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// `GET /hello` only: no metadata changes.
    Read,
    /// Every other request is `POST /visit`, which changes one metadata entry.
    HalfWrites,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::HalfWrites => "50% writes",
        }
    }
}

struct Options {
    rounds: usize,
    duration: u64,
    connections: usize,
    configs: Vec<Config>,
    write: Option<PathBuf>,
}

fn options(args: &[String]) -> Result<Options, Error> {
    let mut options = Options {
        rounds: 5,
        duration: 8,
        connections: 32,
        configs: Config::ALL.to_vec(),
        write: None,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => options.rounds = value()?.parse()?,
            "--duration" => options.duration = value()?.parse()?,
            "--connections" => options.connections = value()?.parse()?,
            "--configs" => {
                options.configs = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--write" => options.write = Some(value()?.into()),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if !options.configs.contains(&Config::Bare) {
        options.configs.insert(0, Config::Bare);
    }
    if options.rounds == 0 || options.duration == 0 || options.connections == 0 {
        return Err("--rounds, --duration and --connections must be at least 1".into());
    }
    Ok(options)
}

/// One wrk measurement.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// Saves per writing request, where the server can tell (keycard configs).
    saves_per_write: Option<f64>,
}

pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    let options = options(args)?;
    ensure_tool("wrk", "wrk")?;
    ensure_tool("taskset", "util-linux")?;
    let exe = std::env::current_exe()?;
    let workloads = [Workload::Read, Workload::HalfWrites];
    let mut samples: Vec<(Config, Workload, Sample)> = Vec::new();
    let started = Instant::now();
    for round in 0..options.rounds {
        // Interleave: every round visits every config, starting one further along each time.
        let n = options.configs.len();
        for i in 0..n {
            let config = options.configs[(i + round) % n];
            for workload in workloads {
                let sample = measure(&exe, config, workload, &options)?;
                eprintln!(
                    "round {}/{} {:<24} {:<10} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs",
                    round + 1,
                    options.rounds,
                    config.name(),
                    workload.name(),
                    sample.rps,
                    sample.p50_us,
                    sample.p99_us
                );
                samples.push((config, workload, sample));
            }
        }
    }
    let table = report(&options, &samples, started.elapsed());
    println!("{table}");
    if let Some(path) = &options.write {
        let chart = crate::chart::path_beside(path);
        let name = chart
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        write_results(
            path,
            &format!("{table}\n![req/s ÷ bare axum, per configuration and workload]({name})\n"),
        )?;
        crate::chart::write_beside(path, &table)?;
        eprintln!(
            "loadtest: results written to {}, chart to {}",
            path.display(),
            chart.display()
        );
    }
    Ok(())
}

fn ensure_tool(tool: &str, package: &str) -> Result<(), Error> {
    let found = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found(tool) {
        return Ok(());
    }
    eprintln!("loadtest: {tool} missing; installing Debian package {package}");
    let status = Command::new("sh")
        .args([
            "-c",
            &format!("apt-get update -qq && apt-get install -y -qq {package} >/dev/null"),
        ])
        .status()?;
    if !status.success() || !found(tool) {
        return Err(format!("could not install {tool}: run `apt-get install -y {package}`").into());
    }
    Ok(())
}

fn free_port() -> Result<SocketAddr, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Kills the server process when dropped, whatever happens in between.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(
    exe: &Path,
    config: Config,
    addr: SocketAddr,
    control: SocketAddr,
) -> Result<Server, Error> {
    let child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(exe)
        .args([
            "serve",
            config.name(),
            &addr.to_string(),
            &control.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()?;
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{} did not start listening on {addr}", config.name()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// A minimal HTTP/1.1 exchange (the harness needs only a cookie and a JSON body from its own
/// servers); returns the raw response text.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<String, Error> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: 0\r\n"
    );
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn credential(config: Config, addr: SocketAddr) -> Result<(String, String), Error> {
    if config == Config::KeycardMemoryJwt {
        let token = crate::servers::bench_token()?;
        return Ok(("Authorization".into(), format!("Bearer {token}")));
    }
    if !config.uses_login_cookie() {
        return Ok(("Authorization".into(), format!("Bearer {BENCH_KEY}")));
    }
    let response = http(addr, "POST", "/login", &[])?;
    let cookie = response
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie").then(|| {
                value
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .ok_or("login answered without a session cookie")?;
    Ok(("Cookie".into(), cookie))
}

/// The stored session's version and the number of changes the handler made so far (keycard
/// configurations only).
fn stats(control: SocketAddr) -> Option<(u64, u64)> {
    let response = http(control, "GET", "/__stats", &[]).ok()?;
    let body = response.split("\r\n\r\n").nth(1)?;
    let stats: serde_json::Value = serde_json::from_str(body).ok()?;
    Some((stats["version"].as_u64()?, stats["visits"].as_u64()?))
}

fn wrk_script(header: &str, value: &str, workload: Workload) -> String {
    let value = value.replace('\\', "\\\\").replace('"', "\\\"");
    let mut script = format!("wrk.headers[\"{header}\"] = \"{value}\"\n");
    match workload {
        Workload::Read => script.push_str("wrk.method = \"GET\"\nwrk.path = \"/hello\"\n"),
        Workload::HalfWrites => script.push_str(
            "local n = 0\n\
             request = function()\n\
             \x20 n = n + 1\n\
             \x20 if n % 2 == 0 then return wrk.format(\"POST\", \"/visit\") end\n\
             \x20 return wrk.format(\"GET\", \"/hello\")\n\
             end\n",
        ),
    }
    script.push_str(
        "done = function(summary, latency, requests)\n\
         \x20 io.write(string.format(\"KEYCARD requests=%d non2xx=%d errors=%d\\n\", summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))\n\
         end\n",
    );
    script
}

fn measure(
    exe: &Path,
    config: Config,
    workload: Workload,
    options: &Options,
) -> Result<Sample, Error> {
    let addr = free_port()?;
    let control = free_port()?;
    let server = start(exe, config, addr, control)?;
    let (header, value) = credential(config, addr)?;
    let before = stats(control);
    let script_path = std::env::temp_dir().join(format!("keycard-wrk-{}.lua", std::process::id()));
    std::fs::write(&script_path, wrk_script(&header, &value, workload))?;
    let output = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{}", options.connections))
        .arg(format!("-d{}s", options.duration))
        .args(["--timeout", "5s", "--latency", "-s"])
        .arg(&script_path)
        .arg(format!("http://{addr}/hello"))
        .output()?;
    let _ = std::fs::remove_file(&script_path);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let mut sample = parse_wrk(&text).ok_or_else(|| format!("cannot read wrk output:\n{text}"))?;
    let bad = text
        .lines()
        .find_map(|l| l.strip_prefix("KEYCARD "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| *k != "requests")
                .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
                .sum::<u64>()
        })
        .unwrap_or(0);
    if bad > 0 {
        return Err(format!(
            "{}: {bad} failed or non-2xx responses:\n{text}",
            config.name()
        )
        .into());
    }
    // Requests wrk gave up on at the deadline may still be finishing: let them.
    std::thread::sleep(Duration::from_millis(200));
    if let (Some((version_before, visits_before)), Some((version, visits))) =
        (before, stats(control))
    {
        let saves = version - version_before;
        sample.saves_per_write = Some(match workload {
            // Writes are counted where they happen (the handler), not from wrk's total.
            Workload::HalfWrites => saves as f64 / (visits - visits_before).max(1) as f64,
            Workload::Read => saves as f64,
        });
    }
    // keycard configurations delete their Redis session; elsewhere the route is absent (404).
    let _ = http(control, "POST", "/__cleanup", &[]);
    drop(server);
    Ok(sample)
}

fn duration_us(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number,
        "ms" => number * 1e3,
        "s" => number * 1e6,
        "m" => number * 60e6,
        _ => return None,
    })
}

fn parse_wrk(text: &str) -> Option<Sample> {
    let mut p50 = None;
    let mut p99 = None;
    let mut rps = None;
    // The script's summary line: present when wrk ran the harness's script to the end.
    let mut summary = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("50%") {
            p50 = duration_us(rest);
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = duration_us(rest);
        } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = rest.trim().parse().ok();
        } else if line.starts_with("KEYCARD requests=") {
            summary = true;
        }
    }
    summary.then_some(Sample {
        rps: rps?,
        p50_us: p50?,
        p99_us: p99?,
        saves_per_write: None,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn report(options: &Options, samples: &[(Config, Workload, Sample)], elapsed: Duration) -> String {
    let pick = |config: Config, workload: Workload, f: fn(&Sample) -> f64| {
        median(
            samples
                .iter()
                .filter(|(c, w, _)| *c == config && *w == workload)
                .map(|(_, _, s)| f(s))
                .collect(),
        )
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {} cores ({}), server pinned to core 0, wrk (1 thread, {} connections, {} s) to core 1; \
         {} rounds interleaved, medians shown; total {:.0} s.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        options.connections,
        options.duration,
        options.rounds,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| config | workload | req/s | p50 µs | p99 µs | req/s ÷ bare | p99 ÷ bare | saves per write |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let base_rps = pick(Config::Bare, Workload::Read, |s| s.rps);
    let base_p99 = pick(Config::Bare, Workload::Read, |s| s.p99_us);
    for &config in &options.configs {
        for workload in [Workload::Read, Workload::HalfWrites] {
            let rps = pick(config, workload, |s| s.rps);
            let p50 = pick(config, workload, |s| s.p50_us);
            let p99 = pick(config, workload, |s| s.p99_us);
            let saves: Vec<f64> = samples
                .iter()
                .filter(|(c, w, _)| *c == config && *w == workload)
                .filter_map(|(_, _, s)| s.saves_per_write)
                .collect();
            let saves = if saves.is_empty() {
                "–".to_owned()
            } else if workload == Workload::Read {
                format!("{:.0} (total)", median(saves))
            } else {
                format!("{:.3}", median(saves))
            };
            let _ = writeln!(
                out,
                "| {} | {} | {rps:.0} | {p50:.0} | {p99:.0} | {:.3} | {:.2} | {saves} |",
                config.name(),
                workload.name(),
                rps / base_rps,
                p99 / base_p99,
            );
        }
    }
    let _ = writeln!(out, "\nConfigurations:");
    for &config in &options.configs {
        let _ = writeln!(out, "- `{}`: {}", config.name(), config.describe());
    }
    out
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

pub(crate) const BEGIN: &str = "<!-- loadtest:begin -->";
pub(crate) const END: &str = "<!-- loadtest:end -->";

/// Replaces the text between the markers in `path` (appending the section if they are absent).
fn write_results(path: &Path, table: &str) -> Result<(), Error> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{BEGIN}\n{table}\n{END}");
    let updated = match (current.find(BEGIN), current.find(END)) {
        (Some(start), Some(end)) if end > start => {
            format!(
                "{}{section}{}",
                &current[..start],
                &current[end + END.len()..]
            )
        }
        _ => format!("{current}\n{section}\n"),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 2s test @ http://127.0.0.1:1/hello\n  Latency Distribution\n     50%  235.00us\n     75%  300.00us\n     90%  400.00us\n     99%    1.20ms\n  1000 requests in 2.00s\nRequests/sec:   4999.50\nTransfer/sec:      1.00MB\nKEYCARD requests=1000 non2xx=0 errors=0\n";
        let sample = parse_wrk(text).unwrap();
        assert_eq!(sample.rps, 4999.5);
        assert_eq!(sample.p50_us, 235.0);
        assert_eq!(sample.p99_us, 1200.0);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
