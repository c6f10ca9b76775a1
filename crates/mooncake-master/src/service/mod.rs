//! The protocol edge of the control plane: the only place wire types meet the
//! master. `listen` accepts connections on the rpc port and tells the two protocols
//! apart; `grpc` (tonic's generated service) and `framed` (the framed protocol)
//! decode requests; both hand them to `handlers`, one function per method, which
//! calls the domain operation on [`Master`] and encodes its answer. Every
//! call passes the [`Gate`] before and after it runs ([`run`]).

pub mod auth;
pub mod framed;
pub mod grpc;
pub(crate) mod handlers;
pub mod listen;
pub(crate) mod verify;

use crate::api::{Gate, Method};
use crate::master::Master;
use tonic::Status;

pub use handlers::refusal;
pub use listen::{serve, Extra};

/// Runs one call of `method` through the gate: refused before it runs when this
/// master may not serve, and after it ran when its answer may not leave (under HA,
/// once a mutation is replicated; refused if the term ended meanwhile).
pub(crate) async fn run<G: Gate, T>(
    gate: &G,
    method: Method,
    f: impl FnOnce(&Master) -> Result<T, Status>,
) -> Result<T, Status> {
    let pass = gate.enter().map_err(refusal)?;
    let out = f(&pass.master);
    gate.leave(&pass, method.mutates()).await.map_err(refusal)?;
    out
}
