//! TLS for PostgreSQL connections with rustls, following libpq's `sslmode` semantics.
//!
//! tokio-postgres only knows `disable`, `prefer` and `require`; certificate checking is
//! whatever the rustls verifier does. [`PgServerVerifier`] implements libpq's rules
//! (`initialize_SSL` in `fe-secure-openssl.c`, `pq_verify_peer_name_matches_certificate`
//! in `fe-secure-common.c`):
//!
//! * the root certificates are `sslrootcert` (a PEM file, or `system` for the system's
//!   trust store), by default `~/.postgresql/root.crt`;
//! * when that file exists, the chain is verified for *every* sslmode that uses TLS
//!   (`require` then behaves like `verify-ca`, as documented by libpq);
//! * when it does not exist, `verify-ca` and `verify-full` fail and the other modes accept
//!   any certificate;
//! * `verify-full` also checks the host name against the certificate's subject
//!   alternative names, falling back to the Common Name as libpq does.
//!
//! Revocation lists (`sslcrl`, by default `~/.postgresql/root.crl`) and client certificates
//! (`sslcert`/`sslkey`, by default `~/.postgresql/postgresql.crt` and `.key`) are
//! supported; encrypted client keys are not.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::{FileSetting, RootSetting, SslMode, TlsSettings, io_error_text};

/// Root certificates, revocation lists and client certificate, loaded once per connect.
pub(crate) struct Material {
    provider: Arc<CryptoProvider>,
    /// The chain verifier, when a root certificate store is in use.
    pub(crate) webpki: Option<Arc<WebPkiServerVerifier>>,
    /// Where the roots came from, for error messages.
    roots_from: String,
    client_auth: Option<Arc<CertifiedKey>>,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    sni: bool,
    /// The certificates of the root *file*, as DER: a server certificate that is itself in
    /// the file is trusted as it is (OpenSSL, hence libpq, accepts such a pinned
    /// self-signed certificate even when it carries CA:TRUE, which WebPKI refuses).
    pinned: Arc<Vec<Vec<u8>>>,
}

impl Material {
    /// Where the trusted roots came from ("file \"…\"", "the system's trusted roots"), if
    /// certificates are verified at all.
    pub(crate) fn roots_from(&self) -> Option<&str> {
        self.webpki.as_ref().map(|_| self.roots_from.as_str())
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "could not read {what} \"{}\": {}",
            path.display(),
            io_error_text(&e)
        )
    })
}

fn pem_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_file(path, what)?;
    let certs = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("could not read {what} \"{}\": {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "could not read {what} \"{}\": it holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// Load what the TLS handshake needs. Errors are the text after "cannot connect to …: ".
pub(crate) fn load(settings: &TlsSettings, mode: SslMode) -> Result<Material, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifies = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
    const MISSING_HINT: &str = "either provide the file, use the system's trusted roots with \
        sslrootcert=system, or change sslmode to disable server certificate verification";

    let mut roots = RootCertStore::empty();
    let mut crls: Vec<CertificateRevocationListDer<'static>> = Vec::new();
    let mut roots_from = String::new();
    let mut pinned: Vec<Vec<u8>> = Vec::new();
    let use_roots = match &settings.root {
        RootSetting::System => {
            let (added, _) = roots.add_parsable_certificates(system_roots()?.iter().cloned());
            if added == 0 {
                return Err("the system's trust store holds no usable root certificate \
                     (sslrootcert=system); install the ca-certificates package, or name a root \
                     certificate file in sslrootcert"
                    .to_string());
            }
            roots_from = "the system's trusted roots".to_string();
            true
        }
        RootSetting::File(file) => match file.path() {
            Some(path) if std::fs::metadata(path).is_ok() => {
                let certs = pem_certs(path, "root certificate file")?;
                pinned = certs.iter().map(|c| c.as_ref().to_vec()).collect();
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!(
                        "could not read root certificate file \"{}\": no usable certificate in it",
                        path.display()
                    ));
                }
                roots_from = format!("root certificate file \"{}\"", path.display());
                crls = load_crls(&settings.crl)?;
                true
            }
            Some(path) if verifies => {
                return Err(format!(
                    "root certificate file \"{}\" does not exist ({MISSING_HINT})",
                    path.display()
                ));
            }
            None if verifies => {
                return Err(format!(
                    "could not get home directory to locate root certificate file ({MISSING_HINT})"
                ));
            }
            _ => false,
        },
    };

    let webpki = if use_roots {
        let mut builder =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        if !crls.is_empty() {
            builder = builder.with_crls(crls).enforce_revocation_expiration();
        }
        Some(
            builder
                .build()
                .map_err(|e| format!("could not set up certificate verification: {e}"))?,
        )
    } else {
        None
    };

    let client_auth = if settings.send_client_cert {
        load_client_cert(&settings.cert, &settings.key, &provider)?
    } else {
        None
    };

    let mut versions = Vec::new();
    if settings.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if settings.tls13 {
        versions.push(&rustls::version::TLS13);
    }

    Ok(Material {
        provider,
        webpki,
        roots_from,
        client_auth,
        versions,
        sni: settings.sni,
        pinned: Arc::new(pinned),
    })
}

/// The system's trusted roots, read once per process (every database of an audit is a new
/// connection).
fn system_roots() -> Result<&'static [CertificateDer<'static>], String> {
    static ROOTS: std::sync::OnceLock<Result<Vec<CertificateDer<'static>>, String>> =
        std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(format!(
                    "could not load the system's trusted root certificates (sslrootcert=system){why} \
                     (install the ca-certificates package, or name a root certificate file in \
                     sslrootcert)"
                ));
            }
            Ok(found.certs)
        })
        .as_deref()
        .map_err(Clone::clone)
}

/// libpq loads `sslcrl` (default `~/.postgresql/root.crl`) when it exists and silently
/// goes on without one otherwise.
fn load_crls(setting: &FileSetting) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let Some(path) = setting.path() else {
        return Ok(Vec::new());
    };
    if std::fs::metadata(path).is_err() {
        return Ok(Vec::new());
    }
    let bytes = read_file(path, "certificate revocation list")?;
    rustls_pemfile::crls(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "could not read certificate revocation list \"{}\": {e}",
                path.display()
            )
        })
}

/// libpq's client certificate rules: `sslcert` (default `~/.postgresql/postgresql.crt`) is
/// used when it exists; then its key must exist, be private to its owner, and match.
fn load_client_cert(
    cert: &FileSetting,
    key: &FileSetting,
    provider: &CryptoProvider,
) -> Result<Option<Arc<CertifiedKey>>, String> {
    let Some(cert_path) = cert.path() else {
        return Ok(None);
    };
    match std::fs::metadata(cert_path) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(format!(
                "could not open certificate file \"{}\": {}",
                cert_path.display(),
                io_error_text(&e)
            ));
        }
    }
    let chain = pem_certs(cert_path, "certificate file")?;
    let Some(key_path) = key.path() else {
        return Err(format!(
            "certificate \"{}\" present, but no private key file (set sslkey)",
            cert_path.display()
        ));
    };
    let meta = std::fs::metadata(key_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "certificate present, but not private key file \"{}\"",
                key_path.display()
            )
        } else {
            format!(
                "could not stat private key file \"{}\": {}",
                key_path.display(),
                io_error_text(&e)
            )
        }
    })?;
    if !meta.is_file() {
        return Err(format!(
            "private key file \"{}\" is not a regular file",
            key_path.display()
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode();
        let too_open = if meta.uid() == 0 {
            mode & 0o037 != 0
        } else {
            mode & 0o077 != 0
        };
        if too_open {
            return Err(format!(
                "private key file \"{}\" has group or world access; file must have permissions \
                 u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) \
                 or less if owned by root",
                key_path.display()
            ));
        }
    }
    let bytes = read_file(key_path, "private key file")?;
    let key = match rustls_pemfile::private_key(&mut bytes.as_slice()) {
        Ok(Some(k)) => Some(k),
        _ => PrivateKeyDer::try_from(bytes).ok(),
    };
    let Some(key) = key else {
        return Err(format!(
            "could not load private key file \"{}\": no unencrypted PEM or DER private key in it \
             (encrypted keys and sslpassword are not supported)",
            key_path.display()
        ));
    };
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        format!(
            "could not load private key file \"{}\": {e}",
            key_path.display()
        )
    })?;
    // libpq's SSL_check_private_key. rustls' own check (CertifiedKey::keys_match) would
    // also reject X.509 v1 certificates, which OpenSSL and PostgreSQL accept.
    let cert_spki = chain.first().and_then(|c| {
        x509_parser::parse_x509_certificate(c.as_ref())
            .ok()
            .map(|(_, parsed)| parsed.public_key().raw.to_vec())
    });
    if let (Some(cert_spki), Some(key_spki)) = (cert_spki, signing_key.public_key())
        && cert_spki != key_spki.as_ref()
    {
        return Err(format!(
            "certificate \"{}\" does not match private key file \"{}\"",
            cert_path.display(),
            key_path.display()
        ));
    }
    Ok(Some(Arc::new(CertifiedKey::new(chain, signing_key))))
}

/// Always offers the one client certificate, as libpq does.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// What the verifier must check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// No root certificates: accept any certificate (libpq without a root file).
    AcceptAny,
    /// Verify the chain, not the name (verify-ca, and require/prefer with a root file).
    Chain,
    /// Verify the chain and the host name (verify-full).
    ChainAndName,
}

/// Build the rustls configuration for one connection attempt. `saw_handshake` is set
/// when the server's certificate reaches the verifier, i.e. a TLS handshake really began.
pub(crate) fn client_config(
    material: &Material,
    mode: SslMode,
    verify_host: Option<&str>,
    saw_handshake: Arc<AtomicBool>,
) -> Result<ClientConfig, String> {
    let policy = match (&material.webpki, mode) {
        (None, _) => Policy::AcceptAny,
        (Some(_), SslMode::VerifyFull) => Policy::ChainAndName,
        (Some(_), _) => Policy::Chain,
    };
    let verifier = PgServerVerifier {
        policy,
        webpki: material.webpki.clone(),
        pinned: material.pinned.clone(),
        host: verify_host.map(str::to_string),
        algorithms: material.provider.signature_verification_algorithms,
        saw_handshake,
    };
    let builder = ClientConfig::builder_with_provider(material.provider.clone())
        .with_protocol_versions(&material.versions)
        .map_err(|e| format!("could not set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match &material.client_auth {
        Some(key) => builder.with_client_cert_resolver(Arc::new(ClientCert(key.clone()))),
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_sni = material.sni;
    Ok(config)
}

/// libpq's server certificate checks, on top of rustls' WebPKI verifier.
#[derive(Debug)]
struct PgServerVerifier {
    policy: Policy,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pinned: Arc<Vec<Vec<u8>>>,
    /// The `host` connection parameter (not `hostaddr`), for verify-full.
    host: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
    saw_handshake: Arc<AtomicBool>,
}

fn is_name_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

fn other_cert_error(e: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(e))))
}

impl PgServerVerifier {
    fn is_pinned(&self, end_entity: &CertificateDer<'_>) -> bool {
        self.pinned
            .iter()
            .any(|c| c.as_slice() == end_entity.as_ref())
    }
}

/// Whether `cert` is valid at `now` (a pinned certificate skips the chain checks, not these).
fn pinned_validity(cert: &CertificateDer<'_>, now: UnixTime) -> Result<(), ()> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| ())?;
    let now = i64::try_from(now.as_secs()).map_err(|_| ())?;
    let v = parsed.validity();
    if v.not_before.timestamp() <= now && now <= v.not_after.timestamp() {
        Ok(())
    } else {
        Err(())
    }
}

impl ServerCertVerifier for PgServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.saw_handshake.store(true, Ordering::SeqCst);
        let Some(webpki) = self
            .webpki
            .as_ref()
            .filter(|_| self.policy != Policy::AcceptAny)
        else {
            return Ok(ServerCertVerified::assertion());
        };
        if self.policy == Policy::ChainAndName && self.host.is_none() {
            return Err(other_cert_error(HostNameMissing));
        }
        // WebPKI checks the chain first and the name last, so a name error means the
        // chain itself was fine.
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(v) => Ok(v),
            Err(e) if is_name_error(&e) => match (self.policy, self.host.as_deref()) {
                (Policy::ChainAndName, Some(host)) => match libpq_name_check(end_entity, host) {
                    Ok(()) => Ok(ServerCertVerified::assertion()),
                    Err(mismatch) => Err(other_cert_error(mismatch)),
                },
                _ => Ok(ServerCertVerified::assertion()),
            },
            Err(e) if self.is_pinned(end_entity) => {
                // The server's own certificate is in the root file: trusted as it is, as
                // OpenSSL does, provided it is within its validity period.
                pinned_validity(end_entity, now).map_err(|_| e)?;
                match (self.policy, self.host.as_deref()) {
                    (Policy::ChainAndName, Some(host)) => libpq_name_check(end_entity, host)
                        .map(|()| ServerCertVerified::assertion())
                        .map_err(other_cert_error),
                    _ => Ok(ServerCertVerified::assertion()),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// verify-full without a `host` parameter (only `hostaddr`): libpq refuses it too.
#[derive(Debug)]
pub(crate) struct HostNameMissing;

impl fmt::Display for HostNameMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "host name must be specified for a verified SSL connection \
             (set host= to the name in the server certificate, or use sslmode=verify-ca)",
        )
    }
}

impl std::error::Error for HostNameMissing {}

/// The server certificate does not name the host (libpq's wording).
#[derive(Debug)]
pub(crate) struct NameMismatch {
    pub(crate) host: String,
    /// The first name in the certificate and how many were examined.
    pub(crate) first: Option<String>,
    pub(crate) examined: usize,
}

impl fmt::Display for NameMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = &self.host;
        match (&self.first, self.examined) {
            (Some(first), n) if n > 1 => write!(
                f,
                "certificate not valid for name \"{host}\": server certificate for \"{first}\" \
                 (and {} other name{}) does not match host name \"{host}\"",
                n - 1,
                if n == 2 { "" } else { "s" }
            ),
            (Some(first), _) => write!(
                f,
                "certificate not valid for name \"{host}\": server certificate for \"{first}\" \
                 does not match host name \"{host}\""
            ),
            (None, _) => write!(
                f,
                "certificate not valid for name \"{host}\": could not get server's host name \
                 from server certificate"
            ),
        }
    }
}

impl std::error::Error for NameMismatch {}

/// libpq's `wildcard_certificate_match`: `*.` only at the start, matching one label,
/// case-insensitively.
fn wildcard_match(pattern: &str, host: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), host.as_bytes());
    if p.len() < 3 || p[0] != b'*' || p[1] != b'.' || p.len() > s.len() {
        return false;
    }
    let suffix_start = s.len() - p.len() + 1;
    if !p[1..].eq_ignore_ascii_case(&s[suffix_start..]) {
        return false;
    }
    match s.iter().position(|b| *b == b'.') {
        Some(first_dot) => first_dot >= s.len() - p.len(),
        None => true,
    }
}

fn name_matches(name: &str, host: &str) -> bool {
    name.eq_ignore_ascii_case(host) || wildcard_match(name, host)
}

/// libpq's `pgtls_verify_peer_name_matches_certificate_guts`: subject alternative names
/// of the host's type (DNS or IP) exclude the Common Name; otherwise the Common Name is
/// checked too.
pub(crate) fn libpq_name_check(cert: &CertificateDer<'_>, host: &str) -> Result<(), NameMismatch> {
    let mut mismatch = NameMismatch {
        host: host.to_string(),
        first: None,
        examined: 0,
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Err(mismatch);
    };
    let host_ip: Option<std::net::IpAddr> = host.parse().ok();
    let mut check_cn = true;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            let (shown, matched) = match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    if host_ip.is_none() {
                        check_cn = false;
                    }
                    if dns.contains('\0') {
                        return Err(mismatch);
                    }
                    (dns.to_string(), name_matches(dns, host))
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if host_ip.is_some() {
                        check_cn = false;
                    }
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes)
                            .ok()
                            .map(std::net::IpAddr::from),
                        _ => None,
                    };
                    let Some(ip) = ip else {
                        return Err(mismatch);
                    };
                    (ip.to_string(), host_ip == Some(ip))
                }
                _ => continue,
            };
            mismatch.examined += 1;
            mismatch.first.get_or_insert(shown);
            if matched {
                return Ok(());
            }
        }
    }
    if check_cn && let Some(cn) = cert.subject().iter_common_name().next() {
        mismatch.examined += 1;
        if let Ok(cn) = cn.as_str() {
            mismatch.first.get_or_insert_with(|| cn.to_string());
            if !cn.contains('\0') && name_matches(cn, host) {
                return Ok(());
            }
        }
    }
    Err(mismatch)
}

/// Explain a rustls error met during the handshake: what happened, and what to do.
pub(crate) fn describe(e: &rustls::Error, roots_from: Option<&str>, mode: SslMode) -> String {
    use rustls::AlertDescription as A;
    let roots = roots_from.unwrap_or("the root certificates");
    let escape = if mode == SslMode::VerifyFull || mode == SslMode::VerifyCa {
        String::new()
    } else {
        " (with sslmode=require, libpq and pgready verify the chain whenever ~/.postgresql/root.crt \
         or sslrootcert exists)"
            .to_string()
    };
    match e {
        rustls::Error::InvalidCertificate(ce) => match ce {
            CertificateError::Other(other) => {
                if let Some(m) = other.0.downcast_ref::<NameMismatch>() {
                    format!(
                        "TLS handshake failed: {m} (connect using a name the certificate lists, \
                         or use sslmode=verify-ca to skip the name check)"
                    )
                } else if other.0.to_string() == "CaUsedAsEndEntity" {
                    format!(
                        "TLS handshake failed: the server presents a CA certificate as its own \
                         and it is not in {roots} (put that very certificate in sslrootcert to \
                         pin it, or give the server a certificate signed by a CA in {roots})"
                    )
                } else {
                    format!("TLS handshake failed: {}", other.0)
                }
            }
            CertificateError::UnknownIssuer => format!(
                "TLS handshake failed: server certificate is not signed by a CA in {roots} \
                 (check sslrootcert){escape}"
            ),
            CertificateError::BadSignature => format!(
                "TLS handshake failed: a signature in the server's certificate chain is invalid \
                 (checked against {roots})"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "TLS handshake failed: server certificate has expired (renew it on the server)"
                    .to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "TLS handshake failed: server certificate is not valid yet (check the clocks)"
                    .to_string()
            }
            CertificateError::Revoked => {
                "TLS handshake failed: server certificate has been revoked (per sslcrl)".to_string()
            }
            CertificateError::UnknownRevocationStatus => {
                "TLS handshake failed: the revocation list (sslcrl) has no entry for a certificate \
                 in the server's chain"
                    .to_string()
            }
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => {
                "TLS handshake failed: the certificate revocation list (sslcrl) has expired"
                    .to_string()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "TLS handshake failed: server certificate is not valid for TLS server \
                 authentication (check its extendedKeyUsage)"
                    .to_string()
            }
            other => format!("TLS handshake failed: invalid server certificate: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => {
            let hint = match alert {
                A::CertificateRequired | A::HandshakeFailure => {
                    " (the server may require a client certificate: set sslcert and sslkey)"
                }
                A::UnknownCA | A::BadCertificate | A::CertificateUnknown => {
                    " (the server did not accept the client certificate)"
                }
                A::ProtocolVersion => {
                    " (pgready supports TLS 1.2 and 1.3; check ssl_min_protocol_version on the server)"
                }
                _ => "",
            };
            format!("TLS handshake failed: server sent TLS alert \"{alert:?}\"{hint}")
        }
        rustls::Error::PeerIncompatible(why) => format!(
            "TLS handshake failed: no TLS version or cipher suite in common with the server \
             ({why:?}; pgready supports TLS 1.2 and 1.3)"
        ),
        rustls::Error::InvalidMessage(_) => format!(
            "TLS handshake failed: {e} (the answer is not valid TLS: is this port a PostgreSQL \
             server, or is something in between interfering?)"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_libpq() {
        assert!(wildcard_match("*.example.com", "db.example.com"));
        assert!(wildcard_match("*.EXAMPLE.com", "DB.example.COM"));
        assert!(!wildcard_match("*.example.com", "a.db.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(!wildcard_match("db*.example.com", "db1.example.com"));
        assert!(!wildcard_match("*", "x"));
        assert!(name_matches("DB1", "db1"));
        assert!(!name_matches("db1", "db2"));
    }

    fn pem(text: &str) -> CertificateDer<'static> {
        match rustls_pemfile::certs(&mut text.as_bytes()).next() {
            Some(Ok(c)) => c,
            other => panic!("bad fixture: {other:?}"),
        }
    }

    fn check(cert: &CertificateDer<'_>, host: &str) -> Result<(), (Option<String>, usize)> {
        libpq_name_check(cert, host).map_err(|m| (m.first, m.examined))
    }

    #[test]
    fn common_name_is_used_when_there_are_no_dns_names() {
        let cert = pem(include_str!("testdata/cn-only.crt"));
        assert_eq!(check(&cert, "db.example.com"), Ok(()));
        assert_eq!(check(&cert, "DB.Example.COM"), Ok(()));
        assert_eq!(
            check(&cert, "db2.example.com"),
            Err((Some("db.example.com".into()), 1))
        );
    }

    #[test]
    fn dns_names_exclude_the_common_name() {
        let cert = pem(include_str!("testdata/san.crt"));
        assert_eq!(check(&cert, "a.example.com"), Ok(()));
        assert_eq!(check(&cert, "db1.internal"), Ok(()));
        assert_eq!(check(&cert, "10.0.0.5"), Ok(()));
        assert_eq!(
            check(&cert, "a.b.example.com"),
            Err((Some("*.example.com".into()), 3))
        );
        // The CN would match, but DNS names are present: libpq ignores the CN.
        assert!(check(&cert, "legacy.internal").is_err());
        // An IP host is compared with the IP names only.
        assert_eq!(
            check(&cert, "10.0.0.6"),
            Err((Some("*.example.com".into()), 3))
        );
    }

    #[test]
    fn an_ip_host_may_match_the_common_name_despite_dns_names() {
        // libpq's documented departure from RFC 6125 for IP addresses.
        let cert = pem(include_str!("testdata/ip-cn.crt"));
        assert_eq!(check(&cert, "10.0.0.7"), Ok(()));
        assert_eq!(check(&cert, "db.example.com"), Ok(()));
        assert!(check(&cert, "10.0.0.8").is_err());
    }

    #[test]
    fn descriptions_say_what_to_do() {
        let e = other_cert_error(NameMismatch {
            host: "db1".into(),
            first: Some("db2".into()),
            examined: 1,
        });
        let text = describe(&e, None, SslMode::VerifyFull);
        assert!(text.starts_with("TLS handshake failed: certificate not valid for name \"db1\""));
        assert!(text.contains("sslmode=verify-ca"));
        let e = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let text = describe(
            &e,
            Some("root certificate file \"/x/ca.crt\""),
            SslMode::Require,
        );
        assert!(text.contains("not signed by a CA in root certificate file \"/x/ca.crt\""));
        assert!(text.contains("sslmode=require"));
    }

    #[test]
    fn name_mismatch_message() {
        let m = NameMismatch {
            host: "db1".into(),
            first: Some("db2".into()),
            examined: 3,
        };
        assert_eq!(
            m.to_string(),
            "certificate not valid for name \"db1\": server certificate for \"db2\" (and 2 other \
             names) does not match host name \"db1\""
        );
    }
}
