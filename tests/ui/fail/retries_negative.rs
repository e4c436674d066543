#[taskflow::task(retries = -1)]
fn flaky() {}

fn main() {}
