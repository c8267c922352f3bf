//! Throughput and latency of the Redis rate-limit store (`RedisStore`)
//! against a real Redis, through its public API (`RateLimitStore::check`, in `rate_limit::store`).
//!
//! Not a criterion bench: a fixed-time load generator that keeps N checks in
//! flight on one store (one multiplexed connection) and reports checks/s and
//! p50/p99 latency, so the figures compare with `redis-benchmark` running the
//! same script (`benches/redis_store.sh` runs both and prints the ratios).
//!
//! ```text
//! cargo bench --features redis --bench redis_store                 # everything
//! cargo bench --features redis --bench redis_store -- throughput   # 1/16/64 in flight
//! cargo bench --features redis --bench redis_store -- flood        # deny cache on/off
//! cargo bench --features redis --bench redis_store -- evalsha-args # what one check sends
//! ```
//!
//! Under `cargo test --all-targets --features redis` it makes a short smoke
//! run (0.2 s per figure) instead.
//!
//! Environment: `REDIS_URL` (default `redis://127.0.0.1:6379`),
//! `MEASURE_SECS` (3), `WARMUP_SECS` (1), `WORKERS` (tokio worker threads;
//! default 1 = a current-thread runtime), `INFLIGHT` (comma-separated, default
//! `1,16,64`), `TIMEOUT_MS` (the store's timeout, default 1000; see
//! `Config::store`).
//!
//! Keys live under `tower-edge-bench:` and are deleted at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tower_edge::rate_limit::redis::RedisStore;
use tower_edge::rate_limit::store::{Check, RateLimitStore};
use tower_edge::rate_limit::{Key, Quota};

/// Every bench key starts with this; deleted afterwards.
const BENCH_PREFIX: &str = "tower-edge-bench";
const POLICY: &str = "bench";
/// Never limits a hot key at any speed this machine reaches: every check
/// runs the whole script (GET, then SET of the new TAT).
const ALLOW: Quota = Quota::per_second(1_000_000).with_burst(1_000_000);
/// One request per hour: after the first, every check is denied.
const FLOOD: Quota = Quota::per_hour(1);

struct Config {
    url: String,
    measure: Duration,
    warmup: Duration,
    workers: usize,
    inflight: Vec<usize>,
    timeout: Duration,
    /// A smoke run under `cargo test`: also fail on any store error.
    smoke: bool,
    prefix: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} does not parse")),
        Err(_) => default,
    }
}

impl Config {
    /// `smoke`: run under `cargo test` (no `--bench` argument): a short
    /// run that only checks the bench works.
    fn from_env(smoke: bool) -> Self {
        let (inflight, measure, warmup) = if smoke {
            ("1,4", 0.2, 0.05)
        } else {
            ("1,16,64", 3.0, 1.0)
        };
        let inflight = std::env::var("INFLIGHT").unwrap_or_else(|_| inflight.into());
        Self {
            url: env_or("REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
            measure: Duration::from_secs_f64(env_or("MEASURE_SECS", measure)),
            warmup: Duration::from_secs_f64(env_or("WARMUP_SECS", warmup)),
            workers: env_or("WORKERS", 1),
            timeout: Duration::from_millis(env_or("TIMEOUT_MS", 1000)),
            smoke,
            inflight: inflight
                .split(',')
                .map(|n| n.trim().parse().expect("INFLIGHT: comma-separated numbers"))
                .collect(),
            // Fixed, so that `evalsha-args` names the key the bench uses.
            prefix: format!("{BENCH_PREFIX}:rl"),
        }
    }

    fn runtime(&self) -> tokio::runtime::Runtime {
        let mut builder = if self.workers <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(self.workers);
            b
        };
        builder.enable_all().build().expect("tokio runtime")
    }

    /// A store as an application would build it, but with a bench-only
    /// prefix and a 1 s timeout (`TIMEOUT_MS`): the bench measures
    /// throughput, and a timed-out check (5 ms by default) would turn into
    /// a fast local error and inflate the figure. Failures are counted and
    /// printed (`errors=`).
    fn store(&self, deny_cache: bool) -> RedisStore {
        let mut builder = RedisStore::builder(self.url.clone())
            .key_prefix(self.prefix.clone())
            .timeout(self.timeout);
        if !deny_cache {
            builder = builder.deny_cache_capacity(0);
        }
        builder.build().expect("store config")
    }

    /// The Redis key our store uses for `key` (`<prefix>:{<key>}:<policy>`).
    fn redis_key(&self, key: &Key) -> String {
        format!("{}:{{{key}}}:{POLICY}", self.prefix)
    }
}

fn redis_conn(url: &str) -> redis::Connection {
    let fail = |e: &dyn std::fmt::Display| -> ! {
        panic!(
            "this bench needs Redis at {url}: run `redis-server` \
             (install it with `apt-get install redis-server`): {e}"
        )
    };
    let client = redis::Client::open(url).unwrap_or_else(|e| fail(&e));
    client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| fail(&e))
}

/// `calls` of one command in an `INFO commandstats` answer (0 when never
/// called).
fn command_calls(info: &str, command: &str) -> u64 {
    let wanted = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Calls so far of `EVALSHA`, and of the commands our script runs inside
/// it (`TIME`, `GET`, `SET`), from `INFO commandstats`.
fn script_commands(conn: &mut redis::Connection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .expect("INFO commandstats");
    let inner = ["time", "get", "set"]
        .iter()
        .map(|c| command_calls(&info, c))
        .sum();
    (command_calls(&info, "evalsha"), inner)
}

/// CPU seconds Redis used so far (`used_cpu_user` + `used_cpu_sys`).
fn redis_cpu(conn: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(conn).expect("INFO cpu");
    ["used_cpu_user:", "used_cpu_sys:"]
        .iter()
        .filter_map(|field| {
            info.lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|n| n.trim().parse::<f64>().ok())
        })
        .sum()
}

/// CPU seconds this process used so far (utime + stime of
/// `/proc/self/stat`, in clock ticks of 10 ms).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux)");
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn delete_bench_keys(conn: &mut redis::Connection, prefix: &str) -> usize {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(conn)
        .expect("KEYS");
    if !keys.is_empty() {
        let () = redis::cmd("DEL").arg(&keys).query(conn).expect("DEL");
    }
    keys.len()
}

#[derive(Default)]
struct Tally {
    allowed: u64,
    denied: u64,
    errors: u64,
    /// Latency of each check in nanoseconds.
    latencies: Vec<u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.allowed += other.allowed;
        self.denied += other.denied;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
    }

    fn checks(&self) -> u64 {
        self.allowed + self.denied + self.errors
    }

    fn percentile_us(&self, sorted: &[u64], p: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1_000.0
    }
}

struct Run {
    label: String,
    tally: Tally,
    elapsed: Duration,
    /// CPU seconds of (this process, Redis) during the measured window.
    cpu: (f64, f64),
}

impl Run {
    /// Prints the figures; a smoke run also asserts that checks ran and
    /// none failed.
    fn print(mut self, smoke: bool) -> f64 {
        if smoke {
            assert!(
                self.tally.checks() > 0,
                "{}: no check completed",
                self.label
            );
            assert_eq!(self.tally.errors, 0, "{}: store errors", self.label);
        }
        self.tally.latencies.sort_unstable();
        let lat = std::mem::take(&mut self.tally.latencies);
        let rate = self.tally.checks() as f64 / self.elapsed.as_secs_f64();
        let per_check = |secs: f64| secs * 1e6 / self.tally.checks().max(1) as f64;
        println!(
            "{} checks_per_s={:.0} p50_us={:.1} p99_us={:.1} client_cpu_us_per_check={:.2} \
             redis_cpu_us_per_check={:.2} checks={} allowed={} denied={} errors={}",
            self.label,
            rate,
            self.tally.percentile_us(&lat, 50.0),
            self.tally.percentile_us(&lat, 99.0),
            per_check(self.cpu.0),
            per_check(self.cpu.1),
            self.tally.checks(),
            self.tally.allowed,
            self.tally.denied,
            self.tally.errors,
        );
        rate
    }
}

/// Keeps `inflight` checks of `key` going on `store` for warm-up plus
/// measurement; counts only the measured window.
async fn load(
    conn: &mut redis::Connection,
    store: &RedisStore,
    key: Key,
    quota: Quota,
    inflight: usize,
    warmup: Duration,
    measure: Duration,
) -> (Tally, Duration, (f64, f64)) {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(inflight);
    for _ in 0..inflight {
        let store = store.clone();
        let measuring = Arc::clone(&measuring);
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally {
                latencies: Vec::with_capacity(1 << 16),
                ..Tally::default()
            };
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let result = store.check(Check::new(POLICY, &key, &quota, 1)).await;
                let took = start.elapsed();
                if measuring.load(Ordering::Relaxed) {
                    match result {
                        Ok(d) if d.is_allowed() => tally.allowed += 1,
                        Ok(_) => tally.denied += 1,
                        Err(_) => tally.errors += 1,
                    }
                    tally.latencies.push(took.as_nanos() as u64);
                }
                // A check answered locally (deny cache) never yields:
                // yield now and then so every in-flight task gets its turn.
                n = n.wrapping_add(1);
                if n.is_multiple_of(16) {
                    tokio::task::yield_now().await;
                }
            }
            tally
        }));
    }
    tokio::time::sleep(warmup).await;
    // The INFO calls block this runtime's thread for a moment, once at
    // each end of the window.
    let cpu_before = (own_cpu(), redis_cpu(conn));
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(measure).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let cpu = (own_cpu() - cpu_before.0, redis_cpu(conn) - cpu_before.1);
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for task in tasks {
        total.merge(task.await.expect("load task"));
    }
    (total, elapsed, cpu)
}

fn throughput(config: &Config, conn: &mut redis::Connection) {
    let key = Key::from_u64(0x7e57);
    println!(
        "# throughput: one RedisStore (one multiplexed connection), hot key {} allowed on every check; \
         workers={} measure={:?} timeout={:?}",
        config.redis_key(&key),
        config.workers,
        config.measure,
        config.timeout
    );
    for &inflight in &config.inflight {
        let runtime = config.runtime();
        let store = config.store(true);
        let (tally, elapsed, cpu) = runtime.block_on(async {
            store.ping(Duration::from_secs(2)).await.expect("PING");
            load(
                conn,
                &store,
                key,
                ALLOW,
                inflight,
                config.warmup,
                config.measure,
            )
            .await
        });
        assert_eq!(tally.denied, 0, "the ALLOW quota must never deny");
        Run {
            label: format!("ours inflight={inflight}"),
            tally,
            elapsed,
            cpu,
        }
        .print(config.smoke);
        drop(runtime);
    }
}

fn flood(config: &Config, conn: &mut redis::Connection) {
    let key = Key::from_u64(0xf100d);
    println!(
        "# flood: key {} over its limit (1/hour), 64 in flight, deny cache on vs off; \
         Redis commands from INFO deltas",
        config.redis_key(&key)
    );
    for deny_cache in [true, false] {
        // The store's connection lives in the runtime that first used it.
        let runtime = config.runtime();
        let store = config.store(deny_cache);
        runtime
            .block_on(store.ping(Duration::from_secs(2)))
            .expect("Redis answers PING");
        // Use up the quota first (and start from a clean bucket).
        let () = redis::cmd("DEL")
            .arg(config.redis_key(&key))
            .query(conn)
            .expect("DEL");
        let first = runtime
            .block_on(store.check(Check::new(POLICY, &key, &FLOOD, 1)))
            .expect("first check");
        assert!(first.is_allowed());
        let before = script_commands(conn);
        let (tally, elapsed, cpu) = runtime.block_on(load(
            conn,
            &store,
            key,
            FLOOD,
            64,
            Duration::ZERO,
            config.measure,
        ));
        let after = script_commands(conn);
        let (evalsha, inner) = (after.0 - before.0, after.1 - before.1);
        assert_eq!(tally.allowed, 0, "the flooded key must stay limited");
        let label = format!(
            "flood deny_cache={} evalsha_sent={evalsha} commands_in_scripts={inner}",
            if deny_cache { "on" } else { "off" }
        );
        Run {
            label,
            tally,
            elapsed,
            cpu,
        }
        .print(config.smoke);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wants = |name: &str| args.iter().any(|a| a == name);
    let all = !wants("throughput") && !wants("flood") && !wants("evalsha-args");
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not.
    let config = Config::from_env(!wants("--bench"));

    if wants("evalsha-args") {
        // What one check of the throughput bench sends after EVALSHA <sha>:
        // numkeys, key, T (ns), tau (ns), cost, burst.
        let key = Key::from_u64(0x7e57);
        println!(
            "1 {} {} {} 1 {}",
            config.redis_key(&key),
            ALLOW.emission_interval().as_nanos().max(1),
            ALLOW.tolerance().as_nanos(),
            ALLOW.burst()
        );
        return;
    }

    let mut conn = redis_conn(&config.url);
    if all || wants("throughput") {
        throughput(&config, &mut conn);
    }
    if all || wants("flood") {
        flood(&config, &mut conn);
    }
    let deleted = delete_bench_keys(&mut conn, &config.prefix);
    println!("# deleted {deleted} bench keys under {}:*", config.prefix);
}
