#[taskflow::task]
unsafe fn danger(a: i64) -> i64 {
    a
}

fn main() {}
