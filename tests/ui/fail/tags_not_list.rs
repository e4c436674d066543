#[taskflow::task(tags = "x")]
fn tagged() {}

fn main() {}
