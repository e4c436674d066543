#[taskflow::task]
fn greet(names: Vec<&str>, title: Option<&'static str>) -> String {
    format!("{title:?} {names:?}")
}

fn main() {}
