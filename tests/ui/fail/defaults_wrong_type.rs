#[taskflow::task(defaults(a = "two", b = 300, note = 3))]
fn pack(a: u32, b: u8, note: Option<String>) -> u32 {
    let _ = (b, note);
    a
}

fn main() {}
