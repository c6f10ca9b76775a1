//! The Mooncake transfer engine.
