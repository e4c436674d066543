#[taskflow::task]
fn ignore(_: i64) -> i64 {
    0
}

fn main() {}
