#[taskflow::task(timeout = "soon")]
fn greet(name: &str, times: u32) -> String {
    name.repeat(times as usize)
}

fn main() {}
