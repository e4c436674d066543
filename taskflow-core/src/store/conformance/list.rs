//! The run list: its filters and pages.

use std::sync::Arc;

use serde_json::json;

use super::{new_run, submit_new};
use crate::run::{RunStatus, Timestamp};
use crate::store::{RunFilter, Store};

pub(super) async fn list_filters_and_pages(store: Arc<dyn Store>) {
    let store = &*store;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit_new(store, new_run(if i % 2 == 0 { "even" } else { "odd" }, json!({ "i": i }))).await.id);
    }
    store.cancel(ids[0], Timestamp(2_000)).await.unwrap();

    let page = store.list(RunFilter::default()).await.unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(page.items.iter().map(|r| r.id).collect::<Vec<_>>(), ids.iter().rev().copied().collect::<Vec<_>>());

    let mut filter =
        RunFilter { task_title: Some("even".to_owned()), limit: Some(1), offset: Some(1), ..RunFilter::default() };
    let page = store.list(filter.clone()).await.unwrap();
    assert_eq!((page.total, page.items.len()), (3, 1));
    assert_eq!(page.items[0].id, ids[2]);

    filter.statuses = vec![RunStatus::Pending];
    filter.offset = None;
    filter.limit = Some(10);
    let page = store.list(filter).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.items.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[4], ids[2]]);

    let only_status = RunFilter { statuses: vec![RunStatus::Cancelled], ..RunFilter::default() };
    let page = store.list(only_status).await.unwrap();
    assert_eq!((page.total, page.items.iter().map(|r| r.id).collect::<Vec<_>>()), (1, vec![ids[0]]));

    // Several statuses: any of them, and still only the task asked for.
    let either = |statuses: Vec<RunStatus>, title: &str| RunFilter {
        statuses,
        task_title: Some(title.to_owned()),
        ..RunFilter::default()
    };
    let page = store.list(either(vec![RunStatus::Cancelled, RunStatus::Pending], "odd")).await.unwrap();
    assert_eq!(page.items.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[3], ids[1]]);
    let page = store.list(either(vec![RunStatus::Cancelled, RunStatus::Running], "odd")).await.unwrap();
    assert_eq!(page.total, 0, "the title binds every status: {:?}", page.items);

    // Past the end: no items, the total still counted.
    let past = RunFilter { offset: Some(10), ..RunFilter::default() };
    let page = store.list(past).await.unwrap();
    assert_eq!((page.total, page.items.len()), (5, 0));
}
