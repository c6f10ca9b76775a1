//! The Mooncake master (see the crate README section in the workspace README).
