//! The test harness of `flotilla_local::testing`, with this crate's `flotilla-net` as the
//! network plugin of per-environment networks.

// Each test crate includes this module and uses a part of it.
#![allow(dead_code, unused_imports)]

pub mod drivers;

use std::future::Future;
use std::path::PathBuf;

pub use flotilla_local::testing::{BUSYBOX, Options, Runtime, with_runtime};

/// [`with_runtime`] with [`Options`]; per-environment networks use this crate's `flotilla-net`.
pub async fn with_runtime_options<F, Fut>(mut options: Options, test: F)
where
    F: FnOnce(Runtime) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    options.network_plugin = Some(PathBuf::from(env!("CARGO_BIN_EXE_flotilla-net")));
    flotilla_local::testing::with_runtime_options(options, test).await
}
