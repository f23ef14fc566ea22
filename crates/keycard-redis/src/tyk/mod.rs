//! Tyk's own Redis layout (docs written below).

mod doc;
mod hash;
mod store;
mod time;

pub use hash::{TykHashFunction, TykKeyHash};
pub use store::{TYK_KEY_PREFIX, TykRedisStore, TykRedisStoreBuilder};
