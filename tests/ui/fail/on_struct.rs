#[taskflow::task]
struct NotAFunction {
    a: i64,
}

fn main() {}
