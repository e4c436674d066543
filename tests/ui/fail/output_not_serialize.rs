struct Report {
    total: i64,
}

#[taskflow::task]
fn report(total: i64) -> Report {
    Report { total }
}

fn main() {
    let _ = report(1).total;
}
