#[taskflow::task(title = "has space")]
fn spaced() {}

fn main() {}
