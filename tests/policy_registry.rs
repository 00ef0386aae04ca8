//! The policy chain kept in the store, as several hosts see it (two registries opened on
//! one database: SQLite and PostgreSQL): concurrent uploads all land, a change made on one
//! host is what the other runs after its next look at the store, changes made on both at
//! once both take effect, the chain loads again on restart, and the chain an earlier
//! release kept on disk is imported once.

#[macro_use]
mod policy_support;
#[path = "support/postgres.rs"]
mod postgres;

use std::sync::Arc;

use rebound::api::registry::{FOLLOW_INTERVAL, PolicyRegistry};
use rebound::config::PolicyLimits;
use rebound::store::Store;

fn limits(dir: &std::path::Path) -> PolicyLimits {
    PolicyLimits {
        cache_dir: dir.join("cache"),
        ..PolicyLimits::default()
    }
}

async fn names(r: &PolicyRegistry) -> Vec<(String, usize)> {
    r.list()
        .await
        .into_iter()
        .map(|p| (p.stats.name, p.version))
        .collect()
}

fn chain_names(r: &PolicyRegistry) -> Vec<String> {
    r.chain()
        .modules()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

async fn two_hosts(url: &str) {
    let scripted = std::fs::read(guest_or_skip!("scripted")).unwrap();
    let counter = std::fs::read(guest_or_skip!("call-counter")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Each host its own compile cache, as on two machines.
    let (la, lb) = (limits(&dir.path().join("a")), limits(&dir.path().join("b")));
    let a = Arc::new(
        PolicyRegistry::open(Store::open(url).await.unwrap(), &[], &la, None)
            .await
            .unwrap(),
    );
    let b = Arc::new(
        PolicyRegistry::open(Store::open(url).await.unwrap(), &[], &lb, None)
            .await
            .unwrap(),
    );

    // Sixteen uploads at once, spread over both hosts: eight of the same bytes under one
    // name, eight of two components under eight names.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let host = if i % 3 == 0 { b.clone() } else { a.clone() };
        let (name, bytes) = match i {
            0..8 => ("same".to_owned(), scripted.clone()),
            _ if i % 2 == 0 => (format!("s{i}"), scripted.clone()),
            _ => (format!("c{i}"), counter.clone()),
        };
        tasks.push(tokio::spawn(async move { host.put(&name, bytes).await }));
    }
    for t in tasks {
        let info = t.await.unwrap().expect("every upload succeeds");
        assert!(info.position >= 1);
    }
    a.reload().await.unwrap();
    b.reload().await.unwrap();
    let on_a = names(&a).await;
    assert_eq!(on_a.len(), 9, "one module per name: {on_a:?}");
    assert!(
        on_a.contains(&("same".into(), 1)),
        "the same bytes are one version"
    );
    assert_eq!(names(&b).await, on_a, "both hosts run one chain");

    // A change on one host: the other runs it once it looked (follow looks every
    // FOLLOW_INTERVAL).
    let follower = {
        let b = b.clone();
        tokio::spawn(async move { b.follow(std::future::pending()).await })
    };
    a.put("same", counter.clone()).await.unwrap();
    a.remove("s10").await.unwrap();
    let started = std::time::Instant::now();
    while chain_names(&b).contains(&"s10".to_owned()) {
        assert!(
            started.elapsed() < FOLLOW_INTERVAL * 5,
            "host b never saw host a's change"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    follower.abort();
    let same_on_b = b
        .chain()
        .modules()
        .iter()
        .find(|m| m.name() == "same")
        .cloned();
    assert_eq!(
        same_on_b.map(|m| m.digest().to_owned()),
        Some(rebound::policy::cache::digest(&counter)),
        "host b runs host a's new version"
    );

    // Changes made on both at once, each from the chain it had: both take effect.
    let (r1, r2) = tokio::join!(b.rollback("same"), a.remove("c9"));
    assert_eq!(r1.unwrap().version, 1);
    r2.unwrap();
    a.reload().await.unwrap();
    b.reload().await.unwrap();
    let after = names(&a).await;
    assert!(
        !after.iter().any(|(n, _)| n == "c9" || n == "s10"),
        "{after:?}"
    );
    assert!(after.contains(&("same".into(), 1)), "{after:?}");
    assert_eq!(names(&b).await, after);

    // A new host (a restart) loads the same chain.
    drop((a, b));
    let again = PolicyRegistry::open(Store::open(url).await.unwrap(), &[], &la, None)
        .await
        .unwrap();
    assert_eq!(names(&again).await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_on_sqlite_share_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    two_hosts(&format!("sqlite://{}", dir.path().join("r.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_on_postgres_share_one_chain() {
    if !postgres::available() {
        return;
    }
    two_hosts(&postgres::database()).await;
}

/// What an earlier release kept in `[api] data_dir`: `registry.json` naming each version's
/// file. A store without a chain takes it once; after that, the store's chain is the one.
#[tokio::test]
async fn a_chain_kept_on_disk_is_imported_once() {
    let scripted_path = guest_or_skip!("scripted");
    let counter_path = guest_or_skip!("call-counter");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("policies");
    std::fs::create_dir_all(&data).unwrap();
    let manifest = serde_json::json!({
        "entries": [
            {"name": "first", "from_config": false, "versions": [
                {"path": scripted_path, "digest": "ignored"},
                {"path": counter_path, "digest": "ignored"}]},
            {"name": "second", "from_config": false, "versions": [
                {"path": scripted_path, "digest": "ignored"}]}
        ],
        "removed_from_config": ["gone"]
    });
    std::fs::write(data.join("registry.json"), manifest.to_string()).unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let limits = limits(dir.path());
    let r = PolicyRegistry::open(Store::open(&url).await.unwrap(), &[], &limits, Some(&data))
        .await
        .unwrap();
    assert_eq!(
        names(&r).await,
        [("first".to_owned(), 2), ("second".to_owned(), 1)]
    );
    // Both versions came along: the rollback has the older one to go back to.
    assert_eq!(r.rollback("first").await.unwrap().version, 1);
    drop(r);
    // The directory is not read again: the store's chain (after the rollback) stays.
    let r = PolicyRegistry::open(Store::open(&url).await.unwrap(), &[], &limits, Some(&data))
        .await
        .unwrap();
    assert_eq!(
        names(&r).await,
        [("first".to_owned(), 1), ("second".to_owned(), 1)]
    );
}
