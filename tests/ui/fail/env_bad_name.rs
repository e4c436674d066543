#[taskflow::task(env = ["API TOKEN"], image = "Not Valid")]
fn work(a: i64) -> i64 {
    a
}

fn main() {}
