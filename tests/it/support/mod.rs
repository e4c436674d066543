//! What the tests share: the backends to run on, the server under test, a
//! store that intercepts calls, a TCP proxy that injects faults, and the
//! tasks the tests submit.

pub(crate) mod backends;
pub(crate) mod proxy;
pub(crate) mod server;
pub(crate) mod store_hooks;
pub(crate) mod tasks;
