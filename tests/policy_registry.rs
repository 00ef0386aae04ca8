//! The policy registry of `rebound serve` on disk: concurrent uploads (of one module and of
//! several) each land whole, and the saved chain loads again.

#[macro_use]
mod policy_support;

use std::sync::Arc;

use rebound::api::registry::PolicyRegistry;
use rebound::config::PolicyLimits;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_do_not_clobber_each_other() {
    let scripted = guest_or_skip!("scripted");
    let counter = guest_or_skip!("call-counter");
    let dir = tempfile::tempdir().unwrap();
    let limits = PolicyLimits {
        cache_dir: dir.path().join("cache"),
        ..PolicyLimits::default()
    };
    let data = dir.path().join("data");
    let registry = Arc::new(PolicyRegistry::open(&data, &[], &limits).unwrap());
    let scripted = std::fs::read(scripted).unwrap();
    let counter = std::fs::read(counter).unwrap();

    // Eight uploads of the same bytes under one name (one version file, one temporary file
    // name before) and eight of two components under eight names, all at once.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let registry = registry.clone();
        let (name, bytes) = match i {
            0..8 => ("same".to_owned(), scripted.clone()),
            _ if i % 2 == 0 => (format!("s{i}"), scripted.clone()),
            _ => (format!("c{i}"), counter.clone()),
        };
        tasks.push(tokio::spawn(
            async move { registry.put(&name, bytes).await },
        ));
    }
    for t in tasks {
        let info = t.await.unwrap().expect("every upload succeeds");
        assert!(info.position >= 1);
    }
    let list = registry.list().await;
    assert_eq!(list.len(), 9, "one module per name");
    let same = list.iter().find(|p| p.stats.name == "same").unwrap();
    assert_eq!(same.version, 1, "the same bytes are one version");

    // Every kept file is whole, and no temporary file is left behind.
    let mut files = Vec::new();
    for entry in walk(&data) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "left behind: {entry:?}");
        files.push(entry);
    }
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "wasm"))
    {
        let bytes = std::fs::read(f).unwrap();
        assert!(bytes == scripted || bytes == counter, "{f:?} is not whole");
    }
    assert_eq!(
        files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "wasm"))
            .count(),
        9
    );
    drop(registry);

    // The saved manifest loads again, with the same chain.
    let again = PolicyRegistry::open(&data, &[], &limits).unwrap();
    let names: Vec<String> = again
        .list()
        .await
        .into_iter()
        .map(|p| p.stats.name)
        .collect();
    let before: Vec<String> = list.into_iter().map(|p| p.stats.name).collect();
    assert_eq!(names, before);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
