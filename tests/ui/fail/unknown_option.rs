#[taskflow::task(retrys = 2)]
fn flaky() {}

fn main() {}
