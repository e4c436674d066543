//! The control plane as its users meet it: the REST API, the pages, the
//! WebSockets, a real browser, and the command line.

mod api;
mod browser;
mod cli;
pub(crate) mod pages;
mod websockets;
mod workers;
