#[taskflow::task(retries = 1, retries = 2)]
fn flaky() {}

fn main() {}
