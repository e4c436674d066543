#[taskflow::task(executor = "gpu")]
fn train() {}

fn main() {}
