#[taskflow::task(memory = "lots", cpus = 0, pids = 100000, network = "yes")]
fn work(a: i64) -> i64 {
    a
}

fn main() {}
