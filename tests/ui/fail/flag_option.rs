#[taskflow::task(retries, title = "ok")]
fn flaky() {}

fn main() {}
