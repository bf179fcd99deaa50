//! The shared state on a Redis server, for runs on several machines: the state store
//! ([`state`]) and the quota store ([`quota`], one Lua script per operation), both over
//! the one connection setup of [`link`] (reconnection, the schema mark).

pub mod link;
pub mod quota;
pub mod state;
#[cfg(test)]
pub(crate) mod test_server;

pub use quota::RedisQuotas;
pub use state::RedisStore;
