//! TLS for the SMTP pool, in the URL forms lettre users know: `smtps://` is implicit TLS (the
//! session starts encrypted, port 465), `smtp://…?tls=required` upgrades with STARTTLS before
//! anything else is said (port 587) and fails when the server does not offer it. Certificates
//! are checked against the platform's roots, plus any given in `WEDSYNC_SMTP_CA_FILE` (a
//! private relay, the tests). There is no opportunistic mode: a client that falls back to plain
//! text when STARTTLS is missing lets anyone on the path turn TLS off.

use lettre::transport::smtp::client::{AsyncTokioStream, Certificate, TlsParameters};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig};

/// How a connection to the server is secured.
#[derive(Clone)]
pub(super) enum Security {
    Plain,
    /// lettre's STARTTLS, with these parameters.
    StartTls(TlsParameters),
    /// Our own handshake before lettre's session starts (lettre's implicit TLS opens its own
    /// socket, which could not have `TCP_NODELAY`, see `smtp_pool`).
    Implicit(Implicit),
}

/// What an implicit-TLS handshake needs.
#[derive(Clone)]
pub(super) struct Implicit {
    connector: TlsConnector,
    server: ServerName<'static>,
}

impl Security {
    /// The default port of the mode: 25, 587 (submission) or 465 (submissions).
    pub fn default_port(&self) -> u16 {
        match self {
            Security::Plain => 25,
            Security::StartTls(_) => 587,
            Security::Implicit(_) => 465,
        }
    }
}

/// Why the TLS settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum TlsConfigError {
    #[error("has `tls={0}`; the only value is `required` (STARTTLS), or use smtps://")]
    Mode(String),
    #[error("has an unknown parameter `{0}` (only `tls=required` is understood)")]
    Parameter(String),
    #[error("sets tls= on an smtps:// URL, which is always TLS")]
    Redundant,
    #[error("is given extra root certificates that hold no PEM certificate")]
    NoCertificates,
    #[error("cannot be used for TLS ({0})")]
    Tls(String),
}

/// The security a URL asks for (`scheme` smtp or smtps, its query pairs), for `host`, trusting
/// `extra_roots` (PEM) besides the platform's.
pub(super) fn security(
    scheme: &str,
    query: impl Iterator<Item = (String, String)>,
    host: &str,
    extra_roots: Option<&[u8]>,
) -> Result<Security, TlsConfigError> {
    let mut starttls = false;
    for (key, value) in query {
        match (key.as_str(), value.as_str()) {
            ("tls", "required") if scheme == "smtp" => starttls = true,
            ("tls", _) if scheme == "smtps" => return Err(TlsConfigError::Redundant),
            ("tls", other) => return Err(TlsConfigError::Mode(other.to_owned())),
            (other, _) => return Err(TlsConfigError::Parameter(other.to_owned())),
        }
    }
    if scheme == "smtp" && !starttls {
        return Ok(Security::Plain);
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let roots = extra_roots.map(roots).transpose()?.unwrap_or_default();
    if starttls {
        return starttls_parameters(host, &roots).map(Security::StartTls);
    }
    let server = ServerName::try_from(host.to_owned())
        .map_err(|e| TlsConfigError::Tls(format!("`{host}` is not a TLS server name: {e}")))?;
    Ok(Security::Implicit(Implicit {
        connector: TlsConnector::from(client_config(roots)?),
        server,
    }))
}

/// Every certificate of a PEM file, at least one.
fn roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Tls(format!("reading the extra root certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(TlsConfigError::NoCertificates);
    }
    Ok(certificates)
}

/// For lettre's STARTTLS, checked against `host` (a name or an IP address, as the certificate
/// must list it).
fn starttls_parameters(
    host: &str,
    roots: &[CertificateDer<'static>],
) -> Result<TlsParameters, TlsConfigError> {
    let tls = |e: lettre::transport::smtp::Error| TlsConfigError::Tls(e.to_string());
    let mut builder = TlsParameters::builder(host.to_owned());
    for root in roots {
        builder = builder.add_root_certificate(Certificate::from_der(root.to_vec()).map_err(tls)?);
    }
    builder.build_rustls().map_err(tls)
}

/// What lettre's `build_rustls` makes of the same roots: aws-lc-rs, TLS 1.2 and 1.3, the
/// platform verifier with the extra roots.
fn client_config(roots: Vec<CertificateDer<'static>>) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let tls = |e: rustls::Error| TlsConfigError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
            .map_err(tls)?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `stream`, encrypted before the first byte of SMTP (implicit TLS), as a stream lettre's
/// connection can run a session over.
pub(super) async fn encrypt(
    stream: TcpStream,
    implicit: &Implicit,
) -> io::Result<Box<dyn AsyncTokioStream>> {
    let stream = implicit
        .connector
        .connect(implicit.server.clone(), stream)
        .await?;
    Ok(Box::new(Encrypted(stream)))
}

/// A TLS stream as lettre's connection takes one.
#[derive(Debug)]
struct Encrypted(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for Encrypted {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for Encrypted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Encrypted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
