#[taskflow::task(task::retries = 2)]
fn flaky() {}

fn main() {}
