//! Log lines: their sequence numbers, also with writers appending at once.

use std::sync::Arc;

use serde_json::json;
use tokio::task::JoinSet;

use super::{new_run, submit_new};
use crate::log::Level;
use crate::run::{RunId, Timestamp};
use crate::store::Store;

pub(super) async fn log_sequence_numbers(store: Arc<dyn Store>) {
    let store = &*store;
    let a = submit_new(store, new_run("a", json!({}))).await;
    let b = submit_new(store, new_run("b", json!({}))).await;
    let line = |id: RunId, at: i64, level: Level, text: &str| (id, Timestamp(at), level, text.to_owned());
    let first = store
        .append_logs(vec![
            line(a.id, 1, Level::Debug, "a1"),
            line(b.id, 2, Level::Info, "b1"),
            line(RunId::new(), 3, Level::Info, "dropped"),
            line(a.id, 4, Level::Warn, "a2"),
            line(a.id, 5, Level::Error, "a3"),
        ])
        .await
        .unwrap();
    let second =
        store.append_logs(vec![line(a.id, 6, Level::Info, "a4"), line(b.id, 7, Level::Info, "b2")]).await.unwrap();
    assert!(store.append_logs(Vec::new()).await.unwrap().is_empty());

    // Each append answers its lines as stored, in the order given, without
    // the dropped one.
    let answered: Vec<_> = first.iter().map(|l| (l.run_id, l.seq, l.at.0, l.level, l.message.as_str())).collect();
    assert_eq!(
        answered,
        [
            (a.id, 1, 1, Level::Debug, "a1"),
            (b.id, 1, 2, Level::Info, "b1"),
            (a.id, 2, 4, Level::Warn, "a2"),
            (a.id, 3, 5, Level::Error, "a3")
        ]
    );
    let answered: Vec<_> = second.iter().map(|l| (l.run_id, l.seq, l.message.as_str())).collect();
    assert_eq!(answered, [(a.id, 4, "a4"), (b.id, 2, "b2")]);
    let mut stored = store.logs(a.id, 0, 100).await.unwrap();
    stored.extend(store.logs(b.id, 0, 100).await.unwrap());
    for line in first.iter().chain(&second) {
        assert!(stored.contains(line), "{line:?} is what `logs` returns");
    }

    let all = store.logs(a.id, 0, 100).await.unwrap();
    let seen: Vec<_> = all.iter().map(|l| (l.seq, l.at.0, l.level, l.message.as_str())).collect();
    assert_eq!(
        seen,
        [(1, 1, Level::Debug, "a1"), (2, 4, Level::Warn, "a2"), (3, 5, Level::Error, "a3"), (4, 6, Level::Info, "a4")]
    );
    assert!(all.iter().all(|l| l.run_id == a.id));
    let page: Vec<u64> = store.logs(a.id, 1, 2).await.unwrap().iter().map(|l| l.seq).collect();
    assert_eq!(page, [2, 3]);
    assert!(store.logs(a.id, 4, 100).await.unwrap().is_empty());
    let b_lines: Vec<_> = store.logs(b.id, 0, 100).await.unwrap().into_iter().map(|l| (l.seq, l.message)).collect();
    assert_eq!(b_lines, [(1, "b1".to_owned()), (2, "b2".to_owned())]);
    // Only the given lines: a run's log never had more.
    assert!(store.logs(RunId::new(), 0, 100).await.unwrap().is_empty());
}

/// Writers appending to the same runs at once: every line gets its own
/// number, with no gap, and each writer's lines keep their order.
pub(super) async fn concurrent_log_appends(store: Arc<dyn Store>) {
    let a = submit_new(&*store, new_run("a", json!({}))).await.id;
    let b = submit_new(&*store, new_run("b", json!({}))).await.id;
    let mut writers = JoinSet::new();
    for writer in 0..8 {
        let store = Arc::clone(&store);
        writers.spawn(async move {
            for batch in 0..5 {
                // Runs in both orders, so writers lock them in both orders.
                let (first, second) = if writer % 2 == 0 { (a, b) } else { (b, a) };
                let lines = (0..4)
                    .map(|i| {
                        let id = if i % 2 == 0 { first } else { second };
                        (id, Timestamp(i), Level::Info, format!("{writer}/{batch}/{i}"))
                    })
                    .collect();
                store.append_logs(lines).await.unwrap();
            }
        });
    }
    writers.join_all().await;
    for id in [a, b] {
        let lines = store.logs(id, 0, 1000).await.unwrap();
        assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), (1..=80).collect::<Vec<_>>());
        for writer in 0..8 {
            let mine: Vec<(u32, u32)> = lines
                .iter()
                .filter_map(|l| {
                    let mut parts = l.message.split('/').map(|p| p.parse::<u32>().unwrap());
                    let (w, batch, i) = (parts.next()?, parts.next()?, parts.next()?);
                    (w == writer).then_some((batch, i))
                })
                .collect();
            let mut sorted = mine.clone();
            sorted.sort_unstable();
            assert_eq!(mine, sorted, "writer {writer}'s lines keep their order");
            assert_eq!(mine.len(), 10);
        }
    }
}
