#[taskflow::task(memory = "1MiB", cpus = "two")]
fn work(a: i64) -> i64 {
    a
}

fn main() {}
