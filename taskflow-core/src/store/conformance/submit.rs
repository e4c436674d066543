//! Submits: a run round-trips, payloads keep their text, de-duplication and
//! idempotency keys, equal submits at once.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{get, new_run, report, request, running, submit_new};
use crate::run::ExecutorKind;
use crate::run::{RunId, RunStatus, Timestamp};
use crate::store::{Error, NewRun, Outcome, RunFilter, Store};

pub(super) async fn submit_get_round_trip(store: Arc<dyn Store>) {
    let store = &*store;
    let mut new = NewRun::new("add", json!({"a": 1, "b": [true, null, "x"]}));
    new.max_attempts = 3;
    new.executor = ExecutorKind::Process;
    new.priority = -7;
    new.not_before = Some(Timestamp(42));
    new.timeout_ms = Some(30_000);
    new.retry_delay_ms = 250;
    new.idempotency_key = Some("key-1".to_owned());
    let before = Timestamp::now();
    let run = submit_new(store, new).await;
    assert_eq!(run.status, RunStatus::Pending);
    assert_eq!((run.attempt, run.max_attempts, run.priority), (1, 3, -7));
    assert_eq!(run.not_before, Timestamp(42));
    assert_eq!((run.timeout_ms, run.retry_delay_ms), (Some(30_000), 250));
    assert!(run.created_at >= before);
    assert_eq!(run.idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(get(store, run.id).await, run);
    assert_eq!(store.get(RunId::new()).await.unwrap(), None);

    // Without a `not_before`, a run may start at once.
    let plain = submit_new(store, NewRun::new("add", json!({}))).await;
    assert_eq!(plain.not_before, plain.created_at);
    assert_eq!(get(store, plain.id).await, plain);

    // At least one attempt; the largest numbers survive.
    let mut extreme = new_run("extreme", json!({}));
    extreme.max_attempts = 0;
    extreme.priority = i32::MIN;
    extreme.timeout_ms = Some(u64::try_from(i64::MAX).unwrap());
    let extreme = submit_new(store, extreme).await;
    assert_eq!(extreme.max_attempts, 1);
    assert_eq!(get(store, extreme.id).await, extreme);
}

/// Payloads and results come back as submitted: key order, number
/// spelling and escapes included.
pub(super) async fn payload_and_result_keep_their_text(store: Arc<dyn Store>) {
    let store = &*store;
    let text = r#"{"z":1,"a":{"y":[1e15,-0.0,18446744073709551615,-9223372036854775808,0.1],"b":"nul \u0000, ü, \"q\""},"m":null}"#;
    let payload: Value = serde_json::from_str(text).unwrap();
    let run = running(store, new_run("t", payload.clone()), "w1", 2_000).await;
    assert_eq!(run.payload.to_string(), payload.to_string());
    assert_eq!(get(store, run.id).await.payload.to_string(), payload.to_string());

    let result: Value = serde_json::from_str(r#"{"b":[2.5e-8,{"d":4,"c":3}],"a":"\u0000"}"#).unwrap();
    store.finish(report(&run, "w1", Outcome::Completed(result.clone()), 3_000)).await.unwrap();
    let done = get(store, run.id).await;
    assert_eq!(done.result.map(|r| r.to_string()), Some(result.to_string()));

    // Equal payloads in another key order are the same run.
    let first = submit_new(store, new_run("u", json!({"b": {"y": 1, "x": 2}, "a": [3]}))).await;
    let again = store.submit(new_run("u", json!({"a": [3], "b": {"x": 2, "y": 1}}))).await.unwrap();
    assert_eq!((again.run.id, again.created), (first.id, false));
}

pub(super) async fn de_duplication(store: Arc<dyn Store>) {
    let store = &*store;
    let mut first = serde_json::Map::new();
    first.insert("a".to_owned(), json!(1));
    first.insert("b".to_owned(), json!({"y": 2, "x": 1}));
    let mut reordered = serde_json::Map::new();
    reordered.insert("b".to_owned(), json!({"x": 1, "y": 2}));
    reordered.insert("a".to_owned(), json!(1));
    assert_ne!(Value::Object(first.clone()).to_string(), Value::Object(reordered.clone()).to_string());

    let run = submit_new(store, new_run("t", Value::Object(first.clone()))).await;
    let again = store.submit(new_run("t", Value::Object(reordered.clone()))).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.run, run);

    // Another task with the same payload is another run.
    submit_new(store, new_run("other", Value::Object(first.clone()))).await;

    // Still de-duplicated while running; a new run once it finished.
    let claimed = store.claim(request("w", 1, 2_000)).await.unwrap();
    assert_eq!(claimed[0].id, run.id);
    let again = store.submit(new_run("t", Value::Object(reordered.clone()))).await.unwrap();
    assert_eq!((again.run.id, again.created), (run.id, false));
    store.finish(report(&claimed[0], "w", Outcome::Completed(json!(3)), 3_000)).await.unwrap();
    let fresh_run = submit_new(store, new_run("t", Value::Object(reordered.clone()))).await;
    assert_ne!(fresh_run.id, run.id);

    // `unique: false` always creates, and a unique submit then finds the
    // oldest active run.
    let mut not_unique = new_run("t", Value::Object(first.clone()));
    not_unique.unique = false;
    let other = submit_new(store, not_unique).await;
    assert_ne!(other.id, fresh_run.id);
    let again = store.submit(new_run("t", Value::Object(first.clone()))).await.unwrap();
    assert_eq!((again.run.id, again.created), (fresh_run.id, false));

    // A unique submit finds an active run made without `unique`, too.
    store.cancel(fresh_run.id, Timestamp(4_000)).await.unwrap();
    let again = store.submit(new_run("t", Value::Object(first))).await.unwrap();
    assert_eq!((again.run.id, again.created), (other.id, false));
}

/// A unique submit finds an equal plain run submitted just before it in the
/// same batch, as it does across batches (`de_duplication`): "the pending
/// or running run with the same title and payload" includes runs made
/// without `unique`, committed or not. A plain submit after a unique one
/// still creates its own run.
pub(super) async fn a_unique_submit_finds_a_plain_run_of_its_batch(store: Arc<dyn Store>) {
    let plain = |payload: Value| {
        let mut new = new_run("t", payload);
        new.unique = false;
        new
    };
    let (first, second) =
        tokio::join!(store.submit(plain(json!({"n": 1}))), store.submit(new_run("t", json!({"n": 1}))));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(first.created);
    assert_eq!((second.run.id, second.created), (first.run.id, false), "{second:?}");

    let (first, second) =
        tokio::join!(store.submit(new_run("t", json!({"n": 2}))), store.submit(plain(json!({"n": 2}))));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(first.created && second.created);
    assert_ne!(first.run.id, second.run.id);
    assert_eq!(store.list(RunFilter::default()).await.unwrap().total, 3);
}

pub(super) async fn idempotency_key(store: Arc<dyn Store>) {
    let store = &*store;
    let keyed = |payload: Value| {
        let mut new = new_run("t", payload);
        new.idempotency_key = Some("k1".to_owned());
        new.unique = false;
        new
    };
    let run = submit_new(store, keyed(json!({"a": 1, "b": 2}))).await;
    let again = store.submit(keyed(json!({"b": 2, "a": 1}))).await.unwrap();
    assert_eq!((again.run.clone(), again.created), (run.clone(), false));

    match store.submit(keyed(json!({"a": 2}))).await {
        Err(Error::IdempotencyConflict { key, existing }) => {
            assert_eq!((key.as_str(), existing), ("k1", run.id));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    // The key keeps its run after the run finished.
    store.cancel(run.id, Timestamp(5_000)).await.unwrap();
    let again = store.submit(keyed(json!({"a": 1, "b": 2}))).await.unwrap();
    assert_eq!((again.run.id, again.created), (run.id, false));
    assert_eq!(again.run.status, RunStatus::Cancelled);
}

/// Twenty equal submits at once make one run, by idempotency key and by
/// de-duplication.
pub(super) async fn equal_submits_at_once_make_one_run(store: Arc<dyn Store>) {
    for key in [Some("same-key"), None] {
        let mut submits = JoinSet::new();
        for _ in 0..20 {
            let store = Arc::clone(&store);
            submits.spawn(async move {
                let mut new = new_run("once", json!({"key": key.is_some()}));
                new.idempotency_key = key.map(str::to_owned);
                store.submit(new).await.unwrap()
            });
        }
        let submitted = submits.join_all().await;
        assert_eq!(submitted.iter().filter(|s| s.created).count(), 1, "key {key:?}: {submitted:?}");
        let ids: HashSet<RunId> = submitted.iter().map(|s| s.run.id).collect();
        assert_eq!(ids.len(), 1, "key {key:?}");
    }
    let all = store.list(RunFilter::default()).await.unwrap();
    assert_eq!(all.total, 2);
}
