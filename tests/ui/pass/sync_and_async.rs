use taskflow::task;

/// Add two numbers together
#[task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Say hello later
#[task]
async fn greet_later(name: String) -> String {
    tokio::task::yield_now().await;
    format!("hello {name}")
}

/// Return nothing at all
#[task]
fn nothing() {}

/// Return unit spelled out
#[task]
fn unit() -> () {}

fn main() {
    assert_eq!(add(2, 3), 5);
    nothing();
    unit();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(runtime.block_on(greet_later("you".to_owned())), "hello you");

    let add_def = taskflow::task_def("add").expect("`add` is registered");
    assert_eq!(add_def.description(), "Add two numbers together");
    assert!(!add_def.is_async());
    assert!(taskflow::task_def("greet_later").expect("`greet_later` is registered").is_async());
    assert!(taskflow::task_def("nothing").is_some());
    assert!(taskflow::task_def("unit").is_some());
}
