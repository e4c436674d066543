#[taskflow::task(retries = "2")]
fn flaky() {}

fn main() {}
