#[taskflow::task(queue = "gpu box")]
fn render(frame: u32) -> u32 {
    frame
}

fn main() {}
