//! etcd with TLS and authentication (a real etcd, started by the test, serving a
//! self-signed certificate, with user authentication on and tokens that expire after 2 s):
//! a client that trusts the certificate and logs in reads, writes and watches; its token
//! is renewed when etcd says it expired; a wrong password, no user or no trust are refused.

use std::time::Duration;

use qlb_etcd::{Change, EtcdAuth, EtcdClient, EtcdError, EtcdTls};
use qlb_testkit::{ETCD_USER, Etcd, TestResult, etcd_available};

fn client(etcd: &Etcd, auth: Option<EtcdAuth>) -> TestResult<EtcdClient> {
    let tls = EtcdTls::from_pem_files(etcd.ca_file().ok_or("a secure etcd")?, None)?;
    let builder = EtcdClient::builder([etcd.url()]).tls(tls);
    Ok(match auth {
        Some(auth) => builder.auth(auth),
        None => builder,
    }
    .build()?)
}

#[tokio::test]
async fn a_client_with_tls_and_a_user_works_and_renews_its_token() -> TestResult {
    if !etcd_available() {
        return Ok(());
    }
    let etcd = Etcd::start_secure()?;
    let (user, password) = ETCD_USER;
    let etcd_client = client(&etcd, Some(EtcdAuth::new(user, password)))?;
    etcd_client.put(b"/qlb/secure/a", b"1", None).await?;
    let kv = etcd_client.get(b"/qlb/secure/a").await?.ok_or("the key")?;
    assert_eq!(kv.value, b"1");
    let mut watch = etcd_client
        .watch_prefix(b"/qlb/secure/", kv.mod_revision + 1)
        .await?;
    // Past the token's 2 s: etcd refuses it, and the client logs in again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    etcd_client.put(b"/qlb/secure/b", b"2", None).await?;
    let changes = tokio::time::timeout(Duration::from_secs(10), watch.next()).await??;
    assert!(
        matches!(&changes.changes[..], [Change::Put(kv)] if kv.key == b"/qlb/secure/b"),
        "{changes:?}"
    );
    assert!(etcd_client.get(b"/qlb/secure/b").await?.is_some());

    let refused = |outcome: Result<i64, EtcdError>| match outcome {
        Err(error) => error.to_string(),
        Ok(_) => "accepted".to_owned(),
    };
    let wrong = client(&etcd, Some(EtcdAuth::new(user, "not the password")))?;
    let error = refused(wrong.put(b"/qlb/secure/c", b"3", None).await);
    assert!(error.contains("authentication failed"), "{error}");
    assert!(!error.contains("not the password"), "{error}");
    let anonymous = client(&etcd, None)?;
    let error = refused(anonymous.put(b"/qlb/secure/c", b"3", None).await);
    assert!(
        error.contains("user name is empty") || error.contains("permission denied"),
        "{error}"
    );
    // Without the CA: etcd's certificate is not trusted.
    let other_ca = qlb_testkit::SelfSigned::localhost()?;
    let dir = tempfile::tempdir()?;
    let (other, _) = other_ca.write_pem(dir.path())?;
    let untrusting = EtcdClient::builder([etcd.url()])
        .tls(EtcdTls::from_pem_files(other, None)?)
        .auth(EtcdAuth::new(user, password))
        .build()?;
    let error = refused(untrusting.put(b"/qlb/secure/c", b"3", None).await);
    assert!(error.contains("certificate"), "{error}");
    Ok(())
}
