//! The worker binary of the executor tests: the tasks of
//! `executor_tasks.rs` behind the ordinary `App`, so `executor_app __run
//! <title>` is what the process executor starts and the Docker executor
//! puts into images.

#[path = "executor_tasks.rs"]
mod executor_tasks;

fn main() -> taskflow::Result<()> {
    taskflow::App::from_env().run()
}
