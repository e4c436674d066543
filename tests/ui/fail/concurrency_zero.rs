#[taskflow::task(concurrency = 0, retry_delay = "soon")]
fn work(a: i64) -> i64 {
    a
}

fn main() {}
