//! The private PostgreSQL of `tests/support/postgres.rs`: fresh databases, loopback only,
//! and gone with the process that started it.

#[path = "support/postgres.rs"]
mod postgres;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn each_database_is_new_and_answers() {
    if !postgres::available() {
        return;
    }
    let a = postgres::database();
    let b = postgres::database();
    assert_ne!(a, b);
    for url in [&a, &b] {
        assert_eq!(postgres::psql(url, "SELECT 1"), "1");
    }
    postgres::psql(&a, "CREATE TABLE only_in_a (x int)");
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
    assert_eq!(postgres::psql(&a, tables), "1");
    assert_eq!(postgres::psql(&b, tables), "0");
}

#[test]
fn listens_on_127_0_0_1_only() {
    if !postgres::available() {
        return;
    }
    let url = postgres::cluster_url();
    let port = postgres::shared().port;
    assert_eq!(postgres::psql(&url, "SHOW listen_addresses"), "127.0.0.1");
    // The kernel's list of listening TCP sockets (state 0A) on that port: 127.0.0.1 alone.
    let mut listening = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 3 && f[3] == "0A" && f[1].ends_with(&format!(":{port:04X}")) {
                listening.push(f[1].to_string());
            }
        }
    }
    assert_eq!(listening, [format!("0100007F:{port:04X}")]);
    // Another loopback address reaches the host, not the server.
    assert!(TcpStream::connect(("127.0.0.2", port)).is_err());
}

/// A test process that ends without dropping its shared cluster (statics are never
/// dropped) leaves no server behind.
#[test]
fn the_cluster_goes_with_its_process() {
    if !postgres::available() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "start_the_shared_cluster", "--nocapture"])
        .env("REBOUND_PG_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cluster "))
        .unwrap_or_else(|| panic!("the child printed no cluster: {stdout}"));
    let (port, dir) = line.split_once(' ').unwrap();
    let (port, dir): (u16, PathBuf) = (port.parse().unwrap(), dir.into());
    let deadline = Instant::now() + Duration::from_secs(15);
    while dir.exists() || TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{} still there, or port {port} still open",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The child of [`the_cluster_goes_with_its_process`]; does nothing in a normal run.
#[test]
fn start_the_shared_cluster() {
    if std::env::var_os("REBOUND_PG_CHILD").is_none() {
        return;
    }
    let c = postgres::shared();
    assert_eq!(postgres::psql(&postgres::database(), "SELECT 1"), "1");
    println!("cluster {} {}", c.port, c.dir.display());
}

/// The URL as the store takes it: sqlx's Any driver, no password (trust), no TLS.
#[tokio::test]
async fn sqlx_connects_with_the_url() {
    if !postgres::available() {
        return;
    }
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = postgres::database();
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    conn.close().await.unwrap();
}
