//! A task argument may be called `client`: the typed helper's own client
//! parameter has a name no task uses.

/// Greet a client
#[taskflow::task]
fn greet(client: String) -> String {
    format!("hello {client}")
}

fn main() {
    assert_eq!(greet("Ada".into()), "hello Ada");
    assert!(taskflow::task_def("greet").is_some());
}
