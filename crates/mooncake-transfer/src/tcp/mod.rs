//! The TCP transport: framing, the data listener, pipelined connections and the
//! per-peer connection pool.

pub mod admit;
pub mod ahead;
pub mod auth;
pub mod conn;
mod conn_tasks;
pub mod describe;
pub mod frame;
pub mod grant;
pub mod guarded;
pub mod io;
pub mod lane;
pub mod pool;
pub mod server;
pub mod slice;
pub mod tls;
