//! Initial parsing, token replacement and Retry token validation take any bytes without
//! panicking, and no forged token validates.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use qlb_retry::{Initial, TokenKey, TokenKeys, replace_token};

fuzz_target!(|data: &[u8]| {
    let keys = TokenKeys::new(
        TokenKey::from_cluster_secret(b"fuzz"),
        Some(TokenKey::from_cluster_secret(b"fuzz previous")),
        15,
    );
    let client = SocketAddr::from(([192, 0, 2, 1], 4433));
    // The datagram as an Initial, then its token (or the whole input) as a token: forging
    // an AES-GCM tag is out of a fuzzer's reach, so acceptance means a bug.
    let token = Initial::parse(data).map_or(data, |initial| initial.token);
    assert!(keys.validate(token, client, 0).is_err());
    let _ = replace_token(data, b"a token for the backend");
});
