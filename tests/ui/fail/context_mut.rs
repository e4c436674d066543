use taskflow::TaskContext;

#[taskflow::task]
fn work(ctx: &mut TaskContext, a: i64) -> i64 {
    ctx.info("working");
    a
}

fn main() {}
