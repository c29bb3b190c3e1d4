//! Just enough HTTP/3 by hand to see what the server puts on the wire: a client control
//! stream, a GET with a static-table QPACK header block, and the server's GOAWAY frames.

use std::net::SocketAddr;

use rustls::pki_types::CertificateDer;

use qlb_testkit::SelfSigned;

use super::TestResult;

const CONTROL_STREAM: u64 = 0x00;
const FRAME_HEADERS: u64 = 0x01;
const FRAME_SETTINGS: u64 = 0x04;
const FRAME_GOAWAY: u64 = 0x07;

/// A QUIC connection speaking HTTP/3 without an HTTP/3 library.
pub(crate) struct RawH3 {
    pub endpoint: quinn::Endpoint,
    pub quic: quinn::Connection,
    /// Our control stream, kept open as RFC 9114 requires.
    _control: quinn::SendStream,
}

impl RawH3 {
    pub(crate) async fn connect(
        addr: SocketAddr,
        certificate: &CertificateDer<'static>,
    ) -> TestResult<Self> {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(SelfSigned::client_config_for(
            certificate,
            std::time::Duration::from_secs(10),
        )?);
        let quic = endpoint.connect(addr, "localhost")?.await?;
        let mut control = quic.open_uni().await?;
        // Stream type, then an empty SETTINGS frame.
        control
            .write_all(&[CONTROL_STREAM as u8, FRAME_SETTINGS as u8, 0])
            .await?;
        Ok(Self {
            endpoint,
            quic,
            _control: control,
        })
    }

    /// Sends `GET path` on a new request stream; the response is left unread.
    pub(crate) async fn get(
        &self,
        path: &str,
    ) -> TestResult<(quinn::SendStream, quinn::RecvStream)> {
        let (mut send, recv) = self.quic.open_bi().await?;
        // QPACK: required insert count 0, base 0; :method GET (static 17), :scheme https (23),
        // :authority and :path as literals with static name references 0 and 1.
        let mut block = vec![0x00, 0x00, 0xc0 | 17, 0xc0 | 23];
        for (name_index, value) in [(0u8, "localhost"), (1, path)] {
            block.extend_from_slice(&[0x50 | name_index, u8::try_from(value.len())?]);
            block.extend_from_slice(value.as_bytes());
        }
        let mut frame = vec![FRAME_HEADERS as u8, u8::try_from(block.len())?];
        frame.extend_from_slice(&block);
        send.write_all(&frame).await?;
        send.finish()?;
        Ok((send, recv))
    }

    /// Reads the server's control stream until `count` GOAWAY frames have arrived; returns
    /// their identifiers.
    pub(crate) async fn goaways(&self, count: usize) -> TestResult<Vec<u64>> {
        let mut control = loop {
            let mut stream = self.quic.accept_uni().await?;
            if read_varint(&mut stream).await? == CONTROL_STREAM {
                break stream;
            }
        };
        let mut ids = Vec::new();
        while ids.len() < count {
            let frame_type = read_varint(&mut control).await?;
            let len = usize::try_from(read_varint(&mut control).await?)?;
            let mut payload = vec![0; len];
            control.read_exact(&mut payload).await?;
            if frame_type == FRAME_GOAWAY {
                ids.push(parse_varint(&payload)?);
            }
        }
        Ok(ids)
    }
}

async fn read_varint(stream: &mut quinn::RecvStream) -> TestResult<u64> {
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await?;
    let len = 1 << (first[0] >> 6);
    let mut bytes = vec![first[0]];
    bytes.resize(len, 0);
    stream.read_exact(&mut bytes[1..]).await?;
    parse_varint(&bytes)
}

/// RFC 9000 section 16 variable-length integer.
fn parse_varint(bytes: &[u8]) -> TestResult<u64> {
    let first = *bytes.first().ok_or("empty varint")?;
    let len = 1 << (first >> 6);
    let rest = bytes.get(1..len).ok_or("short varint")?;
    Ok(rest.iter().fold(u64::from(first & 0x3f), |value, byte| {
        (value << 8) | u64::from(*byte)
    }))
}
