//! Token files (`--auth_token_file`, `MOONCAKE_AUTH_TOKEN_FILE`) and HTTP bearer headers:
//! text an operator or a peer hands us. Parsing never panics, and a parsed set
//! recognises each of its own tokens and nothing shorter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake_common::auth::{Challenge, Credential, TokenSet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = TokenSet::parse(text, "fuzz") {
        let _ = set.tenant_of_bearer(text);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let token = line.split_once(':').map_or(line, |(_, t)| t.trim());
            let cred = Credential::from_token(token, "fuzz").expect("a listed token is a credential");
            assert!(set.tenant_of_bearer(&cred.bearer()).is_some());
            let c = Challenge([7u8; 32]);
            assert!(set.verify("rpc", &c, b"n", &cred.prove("rpc", &c, b"n")).is_some());
        }
    }
    let _ = Credential::from_token(text, "fuzz");
});
