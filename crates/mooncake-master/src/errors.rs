//! The master's errors. Per-item outcomes are contract codes
//! ([`mooncake_common::ErrorCode`]): the domain operations return them in `Result`s
//! and the protocol edge (`service`) writes them into answers. A call refused as a
//! whole (HA: not the serving leader) is a [`Refused`]; the edge turns it into the
//! status clients recognise.

/// Why a call was refused as a whole, in words for the caller (names the leader when
/// known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);
