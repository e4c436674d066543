use taskflow::TaskContext;

#[taskflow::task]
fn work(a: i64, ctx: &TaskContext) -> i64 {
    ctx.info("working");
    a
}

fn main() {}
