#[taskflow::task]
fn echo<T>(value: T) -> T {
    value
}

fn main() {}
