//! The `tls` section: pgready's own TLS handshake with the server, the way libpq opens one.
//!
//! A separate TCP connection sends the 8-byte SSLRequest (length 8, code 80877103), reads
//! the server's one-byte answer (`S` or `N`), and on `S` runs a rustls handshake with a
//! verifier that accepts any certificate and records the chain as the server sent it: an
//! expired, self-signed or misnamed certificate is read, never refused. The handshake is
//! then closed with a TLS close_notify before any startup packet is sent, so the server
//! neither authenticates nor logs an error (only `log_connections` notes the connection).
//!
//! Verified against PostgreSQL's sources and docs (14–18):
//! - SSLRequest code 80877103 and the single-byte `S`/`N` answer: protocol-flow docs,
//!   `NEGOTIATE_SSL_CODE` in `pqcomm.h`, handled by `ProcessStartupPacket` in
//!   `postmaster.c` (14–16) / `tcop/backend_startup.c` (17–18).
//! - A client that closes after the handshake without sending anything is not logged:
//!   `ProcessStartupPacket` returns quietly when the first byte of the length word is EOF
//!   ("we might be here after responding to NEGOTIATE_SSL_CODE"), and `be_tls_read` maps a
//!   clean close_notify (`SSL_ERROR_ZERO_RETURN`) to EOF. Checked live in
//!   tests/security_tls.rs (the server log stays free of SSL errors).
//! - ALPN `postgresql`: libpq sends it since 17, servers 17+ check it (`alpn_cb`,
//!   `PG_ALPN_PROTOCOL` in be-secure-openssl.c); servers before 17 ignore the extension.
//! - Direct TLS (`sslnegotiation=direct`, 17+) is not probed: pgready refuses that
//!   connection option (src/target/resolve.rs), so the target never asks for it.
//!
//! Then, with pgready's own code, not the server's word: whether the chain verifies against
//! the target's `sslrootcert` (the file, libpq's default `~/.postgresql/root.crt` when it
//! exists, or `system`), and whether the certificate names the host the user connected to
//! (and any names given with `--tls-name` or `[tls] names`), with libpq's rules.
//!
//! rustls speaks only TLS 1.2 and 1.3, so whether the server also accepts TLS 1.0/1.1 is
//! not probed here: rules judge that from `settings.ssl_min_protocol_version`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::public_key::PublicKey;

use crate::facts::Section;
use crate::target::tls::{self as target_tls, NameMismatch};
use crate::target::{FileSetting, RootSetting, SessionOptions, SslMode, Target};

/// The SSLRequest packet: length 8, then the code 80877103 (1234 << 16 | 5679).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// What `--tls-name` / `[tls] names` add to the name the user connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// The `host` (or `hostaddr`) of the connection.
    Connection,
    /// A name the user gave pgready (the names clients use).
    Option,
}

/// Probe the server and build the `tls` section. `collected_at` is the snapshot's time:
/// `days_left` and the chain verification are computed against it.
pub async fn collect(
    target: &Target,
    opts: &SessionOptions,
    extra_names: &[String],
    collected_at: i64,
) -> Section {
    if target.is_unix_socket() {
        return Section::missing(
            "server reached over a Unix socket: TLS is not used there (audit over TCP, e.g. \
             host=localhost or the server's name, to inspect its certificate)",
        );
    }
    let budget = target
        .connect_timeout_override()
        .unwrap_or(opts.connect_timeout);
    let started = Instant::now();
    let probed = if budget.is_zero() {
        handshake(target).await
    } else {
        match tokio::time::timeout(budget, handshake(target)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the TLS probe of {} did not finish within {} s (connect_timeout): the server \
                 did not answer the SSLRequest or the handshake in time",
                location(target, None),
                budget.as_secs_f64()
            )),
        }
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match probed {
        Ok(seen) => build(target, extra_names, collected_at, seen, elapsed_ms),
        Err(reason) => Section::missing(reason),
    }
}

/// What the handshake saw.
struct Seen {
    address: String,
    protocol: Option<String>,
    cipher: Option<String>,
    alpn: Option<String>,
    chain: Vec<CertificateDer<'static>>,
    server_name: ServerName<'static>,
    /// Set when the handshake failed after the certificate was received.
    error: Option<String>,
}

fn location(target: &Target, ip: Option<IpAddr>) -> String {
    let host = target.host();
    let host_part = if host.contains(':') {
        format!("[{host}]:{}", target.port())
    } else {
        format!("{host}:{}", target.port())
    };
    match ip {
        Some(ip) if ip.to_string() != host => format!("{host_part} ({ip})"),
        _ => host_part,
    }
}

/// Addresses to try, in libpq's order: `hostaddr`, a numeric host, or the host's addresses.
async fn addresses(target: &Target) -> Result<Vec<IpAddr>, String> {
    let host = target.host();
    if let Some(ip) = target.hostaddr().or_else(|| host.parse().ok()) {
        return Ok(vec![ip]);
    }
    let found = tokio::net::lookup_host((host, target.port()))
        .await
        .map_err(|e| {
            format!(
                "could not translate host name \"{host}\" to an address for the TLS probe: {}",
                crate::target::io_error_text(&e)
            )
        })?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for sa in found {
        if !ips.contains(&sa.ip()) {
            ips.push(sa.ip());
        }
    }
    if ips.is_empty() {
        return Err(format!("host name \"{host}\" has no address"));
    }
    Ok(ips)
}

async fn handshake(target: &Target) -> Result<Seen, String> {
    let ips = addresses(target).await?;
    let mut failures = Vec::new();
    let mut connected = None;
    for ip in ips {
        match TcpStream::connect((ip, target.port())).await {
            Ok(s) => {
                connected = Some((ip, s));
                break;
            }
            Err(e) => failures.push(format!(
                "{}: {}",
                location(target, Some(ip)),
                crate::target::io_error_text(&e)
            )),
        }
    }
    let Some((ip, mut tcp)) = connected else {
        return Err(format!(
            "the TLS probe could not connect to {}",
            failures.join("; ")
        ));
    };
    let _ = tcp.set_nodelay(true);
    let at = location(target, Some(ip));
    tcp.write_all(&SSL_REQUEST)
        .await
        .map_err(|e| format!("could not send the SSLRequest to {at}: {}", io_text(&e)))?;
    let mut answer = [0u8; 1];
    match tcp.read(&mut answer).await {
        Ok(0) => {
            return Err(format!(
                "{at} closed the connection in answer to the SSLRequest (is this a PostgreSQL \
                 server? check its log)"
            ));
        }
        Ok(_) => {}
        Err(e) => {
            return Err(format!(
                "could not read the answer to the SSLRequest from {at}: {}",
                io_text(&e)
            ));
        }
    }
    match answer[0] {
        b'S' => {}
        b'N' => return Err("server does not offer TLS (ssl = off)".to_string()),
        b'E' => {
            return Err(format!(
                "{at} answered the SSLRequest with an error message (a server older than \
                 PostgreSQL 7.2, or not PostgreSQL)"
            ));
        }
        other => {
            return Err(format!(
                "{at} answered the SSLRequest with byte 0x{other:02x}, neither S nor N (is this \
                 a PostgreSQL server?)"
            ));
        }
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| format!("could not set up the TLS probe: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    // libpq sends ALPN "postgresql" since 17; servers 17+ check it, older ones ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_sni = target.tls.sni;
    let server_name = ServerName::try_from(target.host().to_string())
        .unwrap_or_else(|_| ServerName::IpAddress(ip.into()));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let recorded = |r: &Recorder| r.chain.lock().map(|c| c.clone()).unwrap_or_default();
    let mut stream = match connector.connect(server_name.clone(), tcp).await {
        Ok(s) => s,
        Err(e) => {
            let why = describe_handshake_error(&e);
            let chain = recorded(&recorder);
            if chain.is_empty() {
                return Err(format!("TLS handshake with {at} failed: {why}"));
            }
            return Ok(Seen {
                address: ip.to_string(),
                protocol: None,
                cipher: None,
                alpn: None,
                chain,
                server_name,
                error: Some(format!("TLS handshake with {at} failed: {why}")),
            });
        }
    };
    let (_, conn) = stream.get_ref();
    let protocol = conn.protocol_version().map(|v| match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
        other => format!("{other:?}"),
    });
    let cipher = conn.negotiated_cipher_suite().map(|s| {
        s.suite()
            .as_str()
            .map_or_else(|| format!("{:?}", s.suite()), str::to_string)
    });
    let alpn = conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let chain = conn
        .peer_certificates()
        .map(<[_]>::to_vec)
        .unwrap_or_else(|| recorded(&recorder));
    // Close cleanly: close_notify, then wait (briefly) for the server to close too, so that
    // it reads a clean EOF and logs nothing.
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(Seen {
        address: ip.to_string(),
        protocol,
        cipher,
        alpn,
        chain,
        server_name,
        error: None,
    })
}

fn io_text(e: &std::io::Error) -> String {
    crate::target::io_error_text(e)
}

fn describe_handshake_error(e: &std::io::Error) -> String {
    use rustls::AlertDescription as A;
    let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                "the server closed the connection during the handshake (check its log: a \
                 certificate or key it could not load, or ssl_ciphers that leave nothing in common)"
                    .to_string()
            }
            _ => io_text(e),
        };
    };
    match r {
        rustls::Error::AlertReceived(A::ProtocolVersion)
        | rustls::Error::PeerIncompatible(_)
        | rustls::Error::AlertReceived(A::HandshakeFailure)
        | rustls::Error::AlertReceived(A::InsufficientSecurity) => format!(
            "no TLS version or cipher suite in common ({r}): pgready speaks TLS 1.2 and 1.3 \
             with AES-GCM or ChaCha20-Poly1305 and ECDHE, as current clients do; check \
             ssl_max_protocol_version, ssl_ciphers and ssl_groups/ssl_ecdh_curve on the server"
        ),
        other => other.to_string(),
    }
}

/// Accepts every certificate and keeps the chain as sent. Nothing is sent over this
/// connection after the handshake, so trusting nothing costs nothing; the verdicts are
/// computed afterwards, by pgready, from the recorded chain.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.chain.lock() {
            *chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
        Ok(ServerCertVerified::assertion())
    }

    // The handshake signature proves the server holds the key; it is checked where the
    // key is one rustls can check (ring refuses RSA keys under 2048 bits, which the
    // key-strength rule reports) and otherwise accepted: no secret follows.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let _ = rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms);
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let _ = rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms);
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn build(
    target: &Target,
    extra_names: &[String],
    collected_at: i64,
    seen: Seen,
    elapsed_ms: u64,
) -> Section {
    let mut problems: Vec<String> = Vec::new();
    if let Some(e) = &seen.error {
        problems.push(e.clone());
    }
    let mut chain_json = Vec::new();
    let mut parsed_validity = Vec::new();
    for (i, der) in seen.chain.iter().enumerate() {
        match x509_parser::parse_x509_certificate(der.as_ref()) {
            Ok((_, cert)) => {
                let info = certificate(&cert, der, i, seen.chain.len(), collected_at);
                parsed_validity.push((
                    cert.validity().not_before.timestamp(),
                    cert.validity().not_after.timestamp(),
                ));
                chain_json.push(info);
            }
            Err(e) => problems.push(format!(
                "certificate {} of the chain could not be parsed ({e}): it is left out",
                i + 1
            )),
        }
    }

    // Names: the host connected to, then the names the user gave.
    let mut names: Vec<(String, NameSource)> =
        vec![(target.host().to_string(), NameSource::Connection)];
    for n in extra_names {
        let n = n.trim();
        if !n.is_empty() && !names.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)) {
            names.push((n.to_string(), NameSource::Option));
        }
    }
    let leaf = seen.chain.first();
    let names_json: Vec<Value> = names
        .iter()
        .map(|(name, source)| {
            let result = leaf.map(|l| target_tls::libpq_name_check(l, name));
            json!({
                "name": name,
                "source": match source {
                    NameSource::Connection => "connection",
                    NameSource::Option => "option",
                },
                "loopback": is_loopback_name(name),
                "matches": matches!(result, Some(Ok(()))),
                "error": match result {
                    Some(Ok(())) => Value::Null,
                    Some(Err(m)) => Value::String(mismatch_text(&m, chain_json.first())),
                    None => Value::String("no certificate".to_string()),
                },
            })
        })
        .collect();
    let hostname_matches = names_json
        .first()
        .and_then(|n| n.get("matches"))
        .cloned()
        .unwrap_or(Value::Null);

    let trust = verify_chain(target, &seen, collected_at, &parsed_validity);

    let data = json!({
        "host": target.host(),
        "port": target.port(),
        "address": seen.address,
        "negotiation": "postgres",
        "protocol": seen.protocol,
        "cipher": seen.cipher,
        "alpn": seen.alpn,
        "handshake_ms": elapsed_ms,
        "chain": chain_json,
        "chain_verified": trust.verified,
        "verify_error": trust.error,
        "verify_reason": trust.reason,
        "roots": trust.roots,
        "hostname_matches": hostname_matches,
        "names": names_json,
    });
    if chain_json_is_empty(&data) {
        problems.push("the server sent no certificate pgready could read".to_string());
        return Section::missing(problems.join("; "));
    }
    if problems.is_empty() {
        Section::ok(data)
    } else {
        Section::partial(data, problems.join("; "))
    }
}

fn chain_json_is_empty(data: &Value) -> bool {
    data.get("chain")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
}

/// "not among the names in CN=localhost: DNS localhost, IP 127.0.0.1".
fn mismatch_text(m: &NameMismatch, leaf: Option<&Value>) -> String {
    let label = leaf
        .and_then(|l| l.get("label"))
        .and_then(Value::as_str)
        .unwrap_or("the certificate");
    let list = |key: &str| -> Vec<String> {
        leaf.and_then(|l| l.get(key))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (dns, ips) = (list("dns_names"), list("ip_addresses"));
    let mut shown = Vec::new();
    if !dns.is_empty() {
        shown.push(format!("DNS {}", dns.join(", ")));
    }
    if !ips.is_empty() {
        shown.push(format!("IP {}", ips.join(", ")));
    }
    if shown.is_empty() {
        match &m.first {
            Some(cn) => format!("not the name in {label} (no subject alternative names; CN {cn})"),
            None => format!("{label} names no host (no subject alternative names, no CN)"),
        }
    } else {
        format!("not among the names in {label}: {}", shown.join("; "))
    }
}

fn is_loopback_name(name: &str) -> bool {
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => {
            let h = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
            h == "localhost" || h.ends_with(".localhost")
        }
    }
}

/// The chain verdict against the target's roots.
struct Trust {
    verified: Option<bool>,
    error: Option<String>,
    reason: Option<String>,
    roots: Option<String>,
}

fn verify_chain(target: &Target, seen: &Seen, collected_at: i64, validity: &[(i64, i64)]) -> Trust {
    let not_checked = |reason: String| Trust {
        verified: None,
        error: None,
        reason: Some(reason),
        roots: None,
    };
    let mut settings = target.tls.clone();
    // The probe verifies the server, it does not log in: no client certificate.
    settings.send_client_cert = false;
    match &settings.root {
        RootSetting::System => {}
        RootSetting::File(FileSetting::Explicit(p)) if std::fs::metadata(p).is_err() => {
            return not_checked(format!(
                "sslrootcert \"{}\" does not exist: chain not checked",
                p.display()
            ));
        }
        RootSetting::File(FileSetting::Default(p)) if std::fs::metadata(p).is_err() => {
            return not_checked(
                "no sslrootcert given: chain not checked (give sslrootcert=FILE with the CA \
                 clients trust, or sslrootcert=system)"
                    .to_string(),
            );
        }
        RootSetting::File(FileSetting::NoHome) => {
            return not_checked(
                "no sslrootcert given (and no home directory for ~/.postgresql/root.crt): \
                 chain not checked"
                    .to_string(),
            );
        }
        RootSetting::File(_) => {}
    }
    let material = match target_tls::load(&settings, SslMode::VerifyCa) {
        Ok(m) => m,
        Err(e) => return not_checked(format!("{e}: chain not checked")),
    };
    let roots = material.roots_from().map(str::to_string);
    let Some(webpki) = material.webpki.clone() else {
        return not_checked("no root certificates loaded: chain not checked".to_string());
    };
    let Some((leaf, intermediates)) = seen.chain.split_first() else {
        return not_checked("no certificate to check".to_string());
    };
    let verified = |roots: Option<String>| Trust {
        verified: Some(true),
        error: None,
        reason: None,
        roots,
    };
    let refused = |error: String, roots: Option<String>| Trust {
        verified: Some(false),
        error: Some(error),
        reason: None,
        roots,
    };
    // A self-signed server certificate is trusted by libpq (OpenSSL) exactly when it is
    // itself one of the roots (pinning); WebPKI would refuse it either way.
    let leaf_self_signed =
        x509_parser::parse_x509_certificate(leaf.as_ref()).is_ok_and(|(_, c)| is_self_signed(&c));
    if leaf_self_signed {
        let pinned = match &settings.root {
            RootSetting::File(f) => f
                .path()
                .and_then(|p| std::fs::read(p).ok())
                .map(|pem| {
                    rustls_pemfile::certs(&mut pem.as_slice())
                        .filter_map(Result::ok)
                        .any(|root| root.as_ref() == leaf.as_ref())
                })
                .unwrap_or(false),
            RootSetting::System => false,
        };
        let from = roots.clone().unwrap_or_else(|| "the roots".to_string());
        return if pinned {
            verified(roots)
        } else {
            refused(
                format!(
                    "the server certificate is self-signed and is not one of the roots in {from}"
                ),
                roots,
            )
        };
    }
    let at = |t: i64| UnixTime::since_unix_epoch(Duration::from_secs(t.max(0) as u64));
    let verify = |t: i64| {
        match webpki.verify_server_cert(leaf, intermediates, &seen.server_name, &[], at(t)) {
            Ok(_) => Ok(()),
            // WebPKI checks the name last: a name error means the chain itself is fine
            // (names are judged separately, with libpq's rules).
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(()),
            Err(e) => Err(e),
        }
    };
    let mut result = verify(collected_at);
    // Dates are judged by their own rules (not_after/not_before): when only the dates
    // fail, check the chain at a moment when every certificate sent was valid.
    if let Err(rustls::Error::InvalidCertificate(
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. },
    )) = &result
        && let (Some(start), Some(end)) = (
            validity.iter().map(|v| v.0).max(),
            validity.iter().map(|v| v.1).min(),
        )
        && start <= end
    {
        result = verify(start);
    }
    match result {
        Ok(()) => verified(roots),
        #[allow(deprecated)]
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnsupportedSignatureAlgorithm
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. },
        )) => refused(
            format!(
                "a certificate of the chain is signed with an algorithm the verifier refuses \
                 ({}), as OpenSSL 3 does at its default security level for SHA-1 and MD5",
                weak_signatures(&seen.chain)
            ),
            roots,
        ),
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
            // WebPKI's own refusals that libpq (OpenSSL) does not share: an X.509 v1
            // certificate, a CA certificate used as the server's. Not a verdict pgready
            // can give with libpq's meaning.
            let what = format!("{:?}", other.0);
            match what.as_str() {
                "UnsupportedCertVersion" => not_checked(
                    "a certificate of the chain is X.509 version 1, which pgready's verifier \
                     cannot check (OpenSSL, and so libpq, accepts it): chain not checked"
                        .to_string(),
                ),
                "CaUsedAsEndEntity" => not_checked(
                    "the server certificate is a CA certificate (basicConstraints CA:TRUE), \
                     which pgready's verifier cannot check as a server certificate (OpenSSL, \
                     and so libpq, accepts it): chain not checked"
                        .to_string(),
                ),
                "EndEntityUsedAsCa" => refused(
                    "a certificate that is not a CA (no basicConstraints CA:TRUE) signs \
                     another certificate of the chain"
                        .to_string(),
                    roots,
                ),
                _ => refused(format!("invalid certificate chain: {}", other.0), roots),
            }
        }
        Err(e) => {
            let text = target_tls::describe(&e, material.roots_from(), SslMode::VerifyCa);
            let text = text
                .strip_prefix("TLS handshake failed: ")
                .unwrap_or(&text)
                .to_string();
            refused(text, roots)
        }
    }
}

/// "CN=db1 signed with sha1WithRSAEncryption" for each certificate of the chain whose
/// signature algorithm rustls does not verify (or the list of algorithms when none is
/// recognised as weak).
fn weak_signatures(chain: &[CertificateDer<'_>]) -> String {
    let mut all = Vec::new();
    let mut weak = Vec::new();
    for der in chain {
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) {
            let (alg, hash) = signature_facts(&cert);
            let label = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map_or_else(|| cert.subject().to_string(), |cn| format!("CN={cn}"));
            let text = format!("{label} signed with {alg}");
            if matches!(hash.as_deref(), Some("sha1" | "md5" | "md4" | "md2")) {
                weak.push(text.clone());
            }
            all.push(text);
        }
    }
    if weak.is_empty() {
        all.join(", ")
    } else {
        weak.join(", ")
    }
}

/// One certificate of the chain as facts.
fn certificate(
    cert: &X509Certificate<'_>,
    der: &CertificateDer<'_>,
    index: usize,
    len: usize,
    collected_at: i64,
) -> Value {
    let subject = cert.subject().to_string();
    let issuer = cert.issuer().to_string();
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let label = match &common_name {
        Some(cn) => format!("CN={cn}"),
        None if !subject.is_empty() => subject.clone(),
        None => "(empty subject)".to_string(),
    };
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(bytes) => ip_addresses.push(ip_text(bytes)),
                _ => {}
            }
        }
    }
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let (key_algorithm, key_bits, key_curve) = key_facts(cert);
    let (signature_algorithm, signature_hash) = signature_facts(cert);
    let self_signed = is_self_signed(cert);
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    let position = if index == 0 {
        "leaf"
    } else if self_signed && index + 1 == len {
        "root"
    } else {
        "intermediate"
    };
    let key = match (&key_curve, key_algorithm.as_str()) {
        (Some(curve), _) => format!("EC {curve} ({key_bits}-bit)"),
        (None, "rsa") => format!("RSA {key_bits}-bit"),
        (None, "rsa-pss") => format!("RSA-PSS {key_bits}-bit"),
        (None, "dsa") => format!("DSA {key_bits}-bit"),
        (None, "ed25519") => "Ed25519".to_string(),
        (None, "ed448") => "Ed448".to_string(),
        (None, other) => format!("{other} ({key_bits}-bit)"),
    };
    json!({
        "position": position,
        "label": label,
        "subject": subject,
        "issuer": issuer,
        "common_name": common_name,
        "dns_names": dns_names,
        "ip_addresses": ip_addresses,
        "serial": serial_text(cert.raw_serial()),
        "not_before": not_before,
        "not_after": not_after,
        "not_before_date": date_text(not_before),
        "not_after_date": date_text(not_after),
        "days_left": days_left(not_after, collected_at),
        "key": key,
        "key_algorithm": key_algorithm,
        "key_bits": key_bits,
        "key_curve": key_curve,
        "signature_algorithm": signature_algorithm,
        "signature_hash": signature_hash,
        "self_signed": self_signed,
        "is_ca": is_ca,
        "sha256": sha256_hex(der.as_ref()),
    })
}

/// Whole days until `not_after`, rounded up: 1 or more while valid, 0 or less once
/// expired (`-days_left` is then how many whole days ago it expired).
fn days_left(not_after: i64, now: i64) -> i64 {
    let secs = not_after - now;
    -((-secs).div_euclid(86_400))
}

fn date_text(epoch: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| epoch.to_string())
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .map(|b| IpAddr::from(b).to_string())
            .unwrap_or_default(),
        16 => <[u8; 16]>::try_from(bytes)
            .map(|b| IpAddr::from(b).to_string())
            .unwrap_or_default(),
        _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// The serial as `openssl x509 -serial` prints it: upper-case hex without leading zeros.
fn serial_text(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[start..].iter().map(|b| format!("{b:02X}")).collect()
}

fn sha256_hex(der: &[u8]) -> Option<String> {
    // rustls' ring provider exposes SHA-256 through its TLS 1.3 suites.
    let rustls::SupportedCipherSuite::Tls13(suite) =
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
    else {
        return None;
    };
    let digest = suite.common.hash_provider.hash(der);
    Some(digest.as_ref().iter().map(|b| format!("{b:02X}")).collect())
}

/// Bits of a big-endian unsigned integer, leading zeros ignored.
fn integer_bits(bytes: &[u8]) -> u64 {
    match bytes.iter().position(|b| *b != 0) {
        Some(i) => (bytes.len() - i - 1) as u64 * 8 + u64::from(8 - bytes[i].leading_zeros()),
        None => 0,
    }
}

/// (algorithm, bits, curve): `rsa`, `rsa-pss`, `ec` (with the curve), `ed25519`, `ed448`,
/// `dsa`, or the OID for anything else.
fn key_facts(cert: &X509Certificate<'_>) -> (String, u64, Option<String>) {
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let parsed = spki.parsed().ok();
    match alg.as_str() {
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => {
            let bits = match &parsed {
                Some(PublicKey::RSA(rsa)) => integer_bits(rsa.modulus),
                _ => 0,
            };
            let name = if alg.ends_with(".10") {
                "rsa-pss"
            } else {
                "rsa"
            };
            (name.to_string(), bits, None)
        }
        "1.2.840.10045.2.1" => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let (curve, bits) = match curve_oid.as_deref() {
                Some("1.2.840.10045.3.1.7") => (Some("P-256".to_string()), 256),
                Some("1.3.132.0.34") => (Some("P-384".to_string()), 384),
                Some("1.3.132.0.35") => (Some("P-521".to_string()), 521),
                Some("1.3.132.0.33") => (Some("P-224".to_string()), 224),
                Some("1.2.840.10045.3.1.1") => (Some("P-192".to_string()), 192),
                Some("1.3.132.0.10") => (Some("secp256k1".to_string()), 256),
                Some("1.3.36.3.3.2.8.1.1.7") => (Some("brainpoolP256r1".to_string()), 256),
                Some("1.3.36.3.3.2.8.1.1.11") => (Some("brainpoolP384r1".to_string()), 384),
                Some("1.3.36.3.3.2.8.1.1.13") => (Some("brainpoolP512r1".to_string()), 512),
                other => {
                    let bits = match &parsed {
                        Some(PublicKey::EC(p)) => p.key_size() as u64,
                        _ => 0,
                    };
                    (other.map(str::to_string), bits)
                }
            };
            ("ec".to_string(), bits, curve)
        }
        "1.3.101.112" => ("ed25519".to_string(), 256, None),
        "1.3.101.113" => ("ed448".to_string(), 456, None),
        "1.2.840.10040.4.1" => {
            // The DSA strength is the size of p, in the parameters (p, q, g).
            let bits = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_sequence().ok())
                .and_then(|s| {
                    x509_parser::der_parser::der::parse_der_integer(&s.content)
                        .ok()
                        .and_then(|(_, p)| p.as_slice().ok().map(integer_bits))
                })
                .unwrap_or(0);
            ("dsa".to_string(), bits, None)
        }
        other => (
            other.to_string(),
            parsed.map_or(0, |p| p.key_size() as u64),
            None,
        ),
    }
}

/// (OpenSSL's name of the signature algorithm, its hash). The hash is null for
/// algorithms without a separate one (Ed25519, Ed448) or unknown ones.
fn signature_facts(cert: &X509Certificate<'_>) -> (String, Option<String>) {
    let alg = &cert.signature_algorithm;
    let oid = alg.algorithm.to_id_string();
    let named = |name: &str, hash: &str| (name.to_string(), Some(hash.to_string()));
    match oid.as_str() {
        "1.2.840.113549.1.1.2" => named("md2WithRSAEncryption", "md2"),
        "1.2.840.113549.1.1.3" => named("md4WithRSAEncryption", "md4"),
        "1.2.840.113549.1.1.4" => named("md5WithRSAEncryption", "md5"),
        "1.2.840.113549.1.1.5" => named("sha1WithRSAEncryption", "sha1"),
        "1.2.840.113549.1.1.14" => named("sha224WithRSAEncryption", "sha224"),
        "1.2.840.113549.1.1.11" => named("sha256WithRSAEncryption", "sha256"),
        "1.2.840.113549.1.1.12" => named("sha384WithRSAEncryption", "sha384"),
        "1.2.840.113549.1.1.13" => named("sha512WithRSAEncryption", "sha512"),
        "1.2.840.10045.4.1" => named("ecdsa-with-SHA1", "sha1"),
        "1.2.840.10045.4.3.1" => named("ecdsa-with-SHA224", "sha224"),
        "1.2.840.10045.4.3.2" => named("ecdsa-with-SHA256", "sha256"),
        "1.2.840.10045.4.3.3" => named("ecdsa-with-SHA384", "sha384"),
        "1.2.840.10045.4.3.4" => named("ecdsa-with-SHA512", "sha512"),
        "1.2.840.10040.4.3" => named("dsaWithSHA1", "sha1"),
        "2.16.840.1.101.3.4.3.1" => named("dsa_with_SHA224", "sha224"),
        "2.16.840.1.101.3.4.3.2" => named("dsa_with_SHA256", "sha256"),
        "1.3.101.112" => ("ED25519".to_string(), None),
        "1.3.101.113" => ("ED448".to_string(), None),
        "1.2.840.113549.1.1.10" => {
            // RSASSA-PSS: the hash is in the parameters (SHA-1 when absent, RFC 4055).
            let hash = match x509_parser::signature_algorithm::SignatureAlgorithm::try_from(alg) {
                Ok(x509_parser::signature_algorithm::SignatureAlgorithm::RSASSA_PSS(p)) => {
                    hash_name(&p.hash_algorithm_oid().to_id_string())
                }
                _ => None,
            };
            ("rsassaPss".to_string(), hash)
        }
        other => (other.to_string(), None),
    }
}

fn hash_name(oid: &str) -> Option<String> {
    Some(
        match oid {
            "1.3.14.3.2.26" => "sha1",
            "2.16.840.1.101.3.4.2.4" => "sha224",
            "2.16.840.1.101.3.4.2.1" => "sha256",
            "2.16.840.1.101.3.4.2.2" => "sha384",
            "2.16.840.1.101.3.4.2.3" => "sha512",
            "1.2.840.113549.2.5" => "md5",
            _ => return None,
        }
        .to_string(),
    )
}

/// Issuer equals subject, and the key identifiers (when both are present) agree.
fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    if cert.subject().as_raw() != cert.issuer().as_raw() {
        return false;
    }
    let mut ski = None;
    let mut aki = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0)
            }
            _ => {}
        }
    }
    match (ski, aki) {
        (Some(s), Some(a)) => s == a,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_left_rounds_up_while_valid() {
        let day = 86_400;
        assert_eq!(days_left(1000 + 10 * day, 1000), 10);
        assert_eq!(days_left(1000 + 10 * day - 5, 1000), 10);
        assert_eq!(days_left(1000 + 1, 1000), 1);
        assert_eq!(days_left(1000, 1000), 0);
        assert_eq!(days_left(1000 - 1, 1000), 0);
        assert_eq!(days_left(1000 - 3 * day - 1, 1000), -3);
    }

    #[test]
    fn integers_count_their_bits() {
        assert_eq!(integer_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(integer_bits(&[0x01, 0x00]), 9);
        assert_eq!(integer_bits(&[0, 0]), 0);
        let mut modulus = vec![0u8];
        modulus.extend([0xffu8; 256]);
        assert_eq!(integer_bits(&modulus), 2048);
    }

    #[test]
    fn serials_print_like_openssl() {
        assert_eq!(serial_text(&[0x00, 0xab, 0x01]), "AB01");
        assert_eq!(serial_text(&[0x00]), "00");
        assert_eq!(serial_text(&[0x12]), "12");
    }

    #[test]
    fn loopback_names() {
        assert!(is_loopback_name("localhost"));
        assert!(is_loopback_name("LOCALHOST."));
        assert!(is_loopback_name("db.localhost"));
        assert!(is_loopback_name("127.0.0.1"));
        assert!(is_loopback_name("127.1.2.3"));
        assert!(is_loopback_name("::1"));
        assert!(!is_loopback_name("db1.example.com"));
        assert!(!is_loopback_name("10.0.0.5"));
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(1_795_600_000), "2026-11-25");
    }
}
