//! [`BoxFuture`]: how async work crosses a trait object, for the store's
//! methods and the tasks' invokers alike.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future, as async tasks are invoked.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
