#[taskflow::task(timeout = "ten")]
fn slow() {}

fn main() {}
