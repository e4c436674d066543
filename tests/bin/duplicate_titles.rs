//! An app with two tasks titled alike, for the start-up check's test.

mod first {
    /// One `twin`.
    #[taskflow::task]
    pub fn twin() -> u8 {
        1
    }
}

mod second {
    /// Another `twin`.
    #[taskflow::task(title = "twin")]
    pub fn other_twin() -> u8 {
        2
    }
}

fn main() -> taskflow::Result<()> {
    taskflow::App::from_env().run()
}
