//! The token test vector in `docs/retry.md` is what this crate mints.

use qlb_retry::{TokenKey, TokenKeys, derive_cluster_key};

/// `name = value` lines of the doc's `retry-token-vector` block.
fn vector() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/retry.md");
    let doc = std::fs::read_to_string(path).expect("docs/retry.md");
    let block = doc
        .split("```text retry-token-vector\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a retry-token-vector block");
    block
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn docs_vector_matches_the_code() {
    let vector = vector();
    let get = |name: &str| {
        vector
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} in the vector"))
    };
    let unhex = |name: &str| hex::decode(get(name)).expect("hex");
    let secret = get("cluster_secret");
    let secret = secret.trim_matches('"').as_bytes();
    assert_eq!(
        derive_cluster_key(secret, qlb_retry::TOKEN_LABEL).to_vec(),
        unhex("token_key")
    );
    let address = get("address").parse().expect("address");
    let issued: u64 = get("issued").parse().expect("seconds");
    let nonce: [u8; 16] = unhex("nonce").try_into().expect("16 octets");
    let keys = TokenKeys::new(TokenKey::from_cluster_secret(secret), None, 15);
    let token = keys
        .mint(address, &unhex("odcid"), issued, nonce)
        .expect("a token");
    assert_eq!(token, unhex("token"));
    // The sealed part is the plaintext plus a 16-octet tag, then the nonce.
    assert_eq!(token.len(), unhex("plaintext").len() + 16 + 16);
    assert_eq!(
        keys.validate(&token, address, issued)
            .expect("valid")
            .odcid(),
        unhex("odcid")
    );
}
