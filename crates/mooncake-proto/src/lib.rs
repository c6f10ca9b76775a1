//! The control-plane protocol built from `proto/mooncake.proto`, and the mapping between
//! the contract's error codes and gRPC statuses.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("mooncake.v1");
}

pub mod convert;
pub mod frame;
pub mod handshake;
pub mod status;

pub use v1::*;
