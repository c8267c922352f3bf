//! Readiness follows Postgres: a cluster of the test's own (initdb in a
//! temporary directory, `pg_ctl` as user `postgres`, a free port) is
//! stopped (`/readyz` 503, reads 503 with `Retry-After`) and started again
//! (`/readyz` 200, reads served: the pool drops its dead connections).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use support::{Shop, config, seed};

/// The newest PostgreSQL server binaries of Debian's packages.
fn pg_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<u32> = std::fs::read_dir(root)
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_unstable();
    let Some(version) = versions.last() else {
        panic!(
            "this test runs a PostgreSQL cluster of its own and needs the server binaries \
             in /usr/lib/postgresql/<version>/bin: `apt-get install postgresql`"
        );
    };
    root.join(version.to_string()).join("bin")
}

/// A cluster in a temporary directory, stopped and removed on drop.
struct Cluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

/// Runs `program args` as `postgres` when we are root (Postgres refuses
/// to run as root), else as ourselves.
fn run_as_postgres(program: &Path, args: &[&str]) -> std::process::Output {
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let mut command = if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let output = command.args(args).output().expect("run a Postgres tool");
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Cluster {
    fn create() -> Self {
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(format!("shop-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        // The cluster's files belong to `postgres` (root: chown).
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        let data = dir.join("data");
        run_as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self { dir, port, bin };
        cluster.start();
        cluster
    }

    fn ctl(&self, args: &[&str]) {
        let data = self.dir.join("data");
        let mut all = vec!["-D", data.to_str().unwrap()];
        all.extend_from_slice(args);
        run_as_postgres(&self.bin.join("pg_ctl"), &all);
    }

    fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        self.ctl(&[
            "-o",
            &options,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
        ]);
    }

    fn stop(&self) {
        self.ctl(&["-m", "fast", "-w", "-t", "60", "stop"]);
    }

    fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn readyz(shop: &Shop) -> StatusCode {
    shop.admin_get("/readyz").await.status()
}

/// Polls `/readyz` until it answers `wanted` (at most 150 × 200 ms).
async fn until_ready_is(shop: &Shop, wanted: StatusCode) -> bool {
    for _ in 0..150 {
        if readyz(shop).await == wanted {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_postgres_is_down_and_recovers() {
    let cluster = tokio::task::spawn_blocking(Cluster::create).await.unwrap();
    let mut config = config(&cluster.url());
    config.pool.acquire_timeout = Duration::from_millis(500);
    let shop = Shop::start(config).await;
    seed(&shop.db, 3).await;
    assert_eq!(readyz(&shop).await, StatusCode::OK);
    let response = shop.get("/products/1").await;
    assert_eq!(response.status(), StatusCode::OK);

    let stopping = &cluster;
    tokio::task::block_in_place(|| stopping.stop());
    assert!(until_ready_is(&shop, StatusCode::SERVICE_UNAVAILABLE).await);
    let body: serde_json::Value = shop.admin_get("/readyz").await.json().await.unwrap();
    assert_eq!(body["status"], "not ready");
    assert_ne!(body["checks"]["postgres"], "ok");
    // A read that needs the database: 503 with Retry-After, not a 500.
    let response = shop.get("/products/3").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));

    let starting = &cluster;
    tokio::task::block_in_place(|| starting.start());
    assert!(until_ready_is(&shop, StatusCode::OK).await);
    let response = shop.get("/products/3").await;
    assert_eq!(response.status(), StatusCode::OK);
    shop.stop().await;
}
