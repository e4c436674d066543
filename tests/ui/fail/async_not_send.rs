use std::rc::Rc;

#[taskflow::task]
async fn hold_rc(a: i64) -> i64 {
    let shared = Rc::new(a);
    tokio::task::yield_now().await;
    *shared
}

fn main() {}
