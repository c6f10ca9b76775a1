//! Grants, as a tenant's peer sends them in a Grant frame on a store's data port
//! (`mooncake_common::grant`). Decoding never panics; what decodes is the same through
//! both decoders, never verifies under a key it was not signed with, and a grant
//! signed again from its fields decodes to those fields and verifies for its tenant
//! only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake_common::grant::{Grant, GrantKey};

fuzz_target!(|data: &[u8]| {
    let key = GrantKey::new([9u8; 32]);
    let Ok(v) = Grant::view(data) else {
        assert!(Grant::parse(data).is_err(), "parse and view disagree");
        return;
    };
    let (g, signed, tag) = Grant::parse(data).expect("what view decodes, parse decodes");
    assert_eq!((g.segment.as_str(), g.addr, g.len), (v.segment, v.addr, v.len));
    assert_eq!((g.generation, g.expires_ms), (v.generation, v.expires_ms));
    assert_eq!((signed, tag), (v.signed, v.tag));
    let _ = v.verify_at(&key, "alpha", 0);
    // Signed again with our key: the same fields back, good for that tenant only.
    let wire = g.sign_with(&key, "alpha").expect("a decoded name fits in a grant");
    let again = Grant::view(&wire).expect("a grant we signed decodes");
    assert_eq!(again.segment, g.segment);
    assert_eq!((again.addr, again.len, again.generation), (g.addr, g.len, g.generation));
    assert!(again.verify_at(&key, "alpha", 0).is_ok());
    assert!(again.verify_at(&key, "beta", 0).is_err());
});
