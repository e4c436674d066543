//! The worker registry: provision tokens are good for one registration
//! before they expire, and a registered worker is found by its token.

use std::sync::Arc;

use crate::run::{ExecutorKind, Timestamp};
use crate::store::{Error, NewProvisionToken, ProvisionRefusal, Registration, Store, WorkerProfile};

fn token(hash: &str, expires_at: i64) -> NewProvisionToken {
    NewProvisionToken {
        token_hash: hash.to_owned(),
        name: format!("box-{hash}"),
        created_at: Timestamp(1_000),
        expires_at: Timestamp(expires_at),
    }
}

fn registration(provision: &str, worker: &str, now: i64) -> Registration {
    Registration {
        provision_hash: provision.to_owned(),
        token_hash: format!("token-of-{worker}"),
        worker_id: worker.to_owned(),
        profile: WorkerProfile {
            host: "build-1".to_owned(),
            version: "0.1.0".to_owned(),
            executors: vec![ExecutorKind::Thread, ExecutorKind::Process],
            tasks: vec!["a".to_owned(), "b".to_owned()],
            queues: vec!["default".to_owned(), "gpu".to_owned()],
            refused: vec![("c".to_owned(), "its arguments differ".to_owned())],
        },
        now: Timestamp(now),
    }
}

fn refusal(result: crate::store::Result<impl std::fmt::Debug>) -> ProvisionRefusal {
    match result {
        Err(Error::Provision(refusal)) => refusal,
        other => panic!("expected a refused provision token, got {other:?}"),
    }
}

pub(super) async fn provision_tokens_register_one_worker_each(store: Arc<dyn Store>) {
    let store = &*store;
    store.add_provision_token(token("p1", 10_000)).await.unwrap();
    let worker = store.register_worker(registration("p1", "w1", 2_000)).await.unwrap();
    assert_eq!((worker.id.as_str(), worker.name.as_str()), ("w1", "box-p1"));
    assert_eq!(worker.profile, registration("p1", "w1", 2_000).profile);
    assert_eq!((worker.registered_at, worker.last_seen, worker.revoked_at), (Timestamp(2_000), Timestamp(2_000), None));
    assert_eq!(store.worker_by_token("token-of-w1".to_owned()).await.unwrap(), Some(worker.clone()), "as stored");
    assert_eq!(store.worker_by_token("token-of-nobody".to_owned()).await.unwrap(), None);

    // Used once, unknown, expired: refused, and nothing changes.
    assert_eq!(refusal(store.register_worker(registration("p1", "w2", 2_100)).await), ProvisionRefusal::Used);
    assert_eq!(refusal(store.register_worker(registration("forged", "w3", 2_100)).await), ProvisionRefusal::Unknown);
    store.add_provision_token(token("p2", 3_000)).await.unwrap();
    assert_eq!(refusal(store.register_worker(registration("p2", "w4", 3_000)).await), ProvisionRefusal::Expired);
    assert_eq!(store.workers().await.unwrap(), std::slice::from_ref(&worker), "only the one registration took");

    // Heard from later; never moved back.
    store.worker_seen("w1".to_owned(), Timestamp(5_000)).await.unwrap();
    store.worker_seen("w1".to_owned(), Timestamp(4_000)).await.unwrap();
    let seen = store.workers().await.unwrap().remove(0);
    assert_eq!((seen.last_seen, seen.registered_at), (Timestamp(5_000), Timestamp(2_000)));
}

/// Workers presenting one token at once: one registers.
pub(super) async fn a_provision_token_raced_for_registers_one(store: Arc<dyn Store>) {
    store.add_provision_token(token("race", 10_000)).await.unwrap();
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let store = store.clone();
        racers.spawn(async move { store.register_worker(registration("race", &format!("r{i}"), 2_000)).await });
    }
    let mut registered = 0;
    while let Some(result) = racers.join_next().await {
        match result.unwrap() {
            Ok(_) => registered += 1,
            other => assert_eq!(refusal(other), ProvisionRefusal::Used),
        }
    }
    assert_eq!(registered, 1);
    assert_eq!(store.workers().await.unwrap().len(), 1);
}

/// Revoking a worker refuses its token from then on and takes back its runs.
pub(super) async fn a_revoked_workers_runs_go_back(store: Arc<dyn Store>) {
    let store = &*store;
    store.add_provision_token(token("p", 10_000)).await.unwrap();
    store.register_worker(registration("p", "w1", 2_000)).await.unwrap();
    let mut new = super::new_run("t", serde_json::json!({}));
    new.max_attempts = 2;
    let held = super::running(store, new, "w1", 2_000).await;
    let other = super::running(store, super::new_run("u", serde_json::json!({})), "w2", 2_000).await;

    let taken = store.revoke_worker("w1".to_owned(), Timestamp(3_000)).await.unwrap();
    assert_eq!(taken.iter().map(|r| r.id).collect::<Vec<_>>(), [held.id]);
    let back = super::get(store, held.id).await;
    assert_eq!((back.status, back.attempt, back.worker_id.as_deref()), (crate::run::RunStatus::Pending, 2, None));
    assert_eq!(back.attempts[0].error.as_ref().map(|e| e.kind.as_str()), Some("worker_revoked"));
    assert_eq!(super::get(store, other.id).await.status, crate::run::RunStatus::Running, "another worker's run stays");
    let revoked = store.worker_by_token("token-of-w1".to_owned()).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(Timestamp(3_000)));

    // Again: nothing more; the first time stands.
    assert!(store.revoke_worker("w1".to_owned(), Timestamp(4_000)).await.unwrap().is_empty());
    assert_eq!(store.workers().await.unwrap()[0].revoked_at, Some(Timestamp(3_000)));
    let unknown = store.revoke_worker("nobody".to_owned(), Timestamp(4_000)).await;
    assert!(matches!(unknown, Err(Error::UnknownWorker(ref id)) if id == "nobody"), "{unknown:?}");
}
