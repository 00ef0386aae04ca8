//! Several processes opening a brand-new store file at the same moment (two `rebound
//! send` started together on a fresh path): every one of them opens it, the schema is
//! migrated once, and no open fails on the migration table or on a migration that
//! another opener is applying.

use rebound::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_of_a_new_file_all_succeed() {
    for round in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        // Independent pools, as separate processes would have.
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::open(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for (i, o) in opens.into_iter().enumerate() {
            match o.await.unwrap() {
                Ok(s) => stores.push(s),
                Err(e) => panic!("round {round}, opener {i}: {e}"),
            }
        }
        // Each migration is recorded once, and the schema works from every opener.
        for s in &stores {
            assert!(!s.ledger_contains("b@example.org", "1").await.unwrap());
        }
        let again = Store::open(&url).await.unwrap();
        assert!(!again.ledger_contains("b@example.org", "1").await.unwrap());
    }
}
