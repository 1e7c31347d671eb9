//! TLS fixtures for the tests that run every dependency as production does:
//! a throwaway CA (rcgen), certificates for `localhost`, a second CA that
//! signed nothing here, a client certificate, and private servers started
//! with TLS on (Postgres, Redis, NATS, an https JWKS endpoint).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{eventually, free_port};

/// PEM files of a throwaway PKI in a temp dir.
#[derive(Debug)]
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A CA that signed nothing here ("wrong CA").
    pub other_ca: PathBuf,
    /// Server certificate, valid for `localhost` only (so `127.0.0.1` is a
    /// wrong host name for verify-full), and its key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate (CN `certuser`) and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-signed CA");
    let pem = cert.pem();
    (Issuer::new(params, key), pem)
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    names: Vec<String>,
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params = CertificateParams::new(names).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("signed leaf");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (issuer, ca_pem) = ca("orchestrator test CA");
        let (_, other_pem) = ca("some other CA");
        let (server_pem, server_key) = leaf(
            &issuer,
            vec!["localhost".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key) = leaf(
            &issuer,
            Vec::new(),
            "certuser",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write PEM");
            p
        };
        Self {
            ca: write("ca.pem", &ca_pem),
            other_ca: write("other-ca.pem", &other_pem),
            server_cert: write("server.pem", &server_pem),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client.key", &client_key),
            dir,
        }
    }

    /// A file holding `text`, for `*_FILE` settings.
    pub fn secret_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write secret file");
        p
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

/// A private `redis-server` listening only on TLS, with the default user
/// off and one ACL user `orch`.
#[derive(Debug)]
pub struct TlsRedis {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

impl TlsRedis {
    pub const USER: &'static str = "orch";

    pub async fn start(pki: &Pki, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients no\nsave \"\"\nappendonly no\ndir {}\n\
             user default off\nuser {} on >{password} ~* &* +@all\n",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca.display(),
            dir.path().display(),
            Self::USER,
        );
        let path = dir.path().join("redis.conf");
        std::fs::write(&path, conf).expect("write redis.conf");
        let child = std::process::Command::new("redis-server")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server installed (the test command installs it)");
        let up = eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        assert!(up.is_some(), "redis-server with TLS did not start");
        Self {
            port,
            _dir: dir,
            child,
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private `nats-server -js` that requires TLS, with an NKey user and a
/// user/password user.
#[derive(Debug)]
pub struct TlsNats {
    pub port: u16,
    pub nkey_seed: String,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

impl TlsNats {
    pub const USER: &'static str = "orch";

    pub async fn start(pki: &Pki, password: &str) -> Self {
        let nkey = nkeys::KeyPair::new_user();
        let authorization = format!(
            "authorization {{\n  users: [\n    {{ nkey: \"{}\" }}\n    {{ user: \"{}\", password: \"{password}\" }}\n  ]\n}}\n",
            nkey.public_key(),
            Self::USER,
        );
        Self::start_with(pki, &authorization, nkey.seed().expect("seed")).await
    }

    /// Token authentication (a server takes a token or users, not both).
    pub async fn start_with_token(pki: &Pki, token: &str) -> Self {
        Self::start_with(
            pki,
            &format!("authorization {{\n  token: \"{token}\"\n}}\n"),
            String::new(),
        )
        .await
    }

    /// Decentralised (operator) authentication: an operator, an account
    /// with JetStream, a user; the user's `.creds` file is written to
    /// `creds` (a wrong one, signed by a stranger account, to `stranger`).
    pub async fn start_operator(pki: &Pki, creds: &Path, stranger: &Path) -> Self {
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        let user = nkeys::KeyPair::new_user();
        let operator_jwt = nats_jwt(
            &operator,
            &operator.public_key(),
            serde_json::json!({"type": "operator", "version": 2}),
        );
        let account_jwt = nats_jwt(
            &operator,
            &account.public_key(),
            serde_json::json!({
                "type": "account", "version": 2,
                "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                           "wildcards": true, "conn": -1, "leaf": -1,
                           "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1},
                "default_permissions": {"pub": {}, "sub": {}}
            }),
        );
        let user_claims = serde_json::json!({
            "type": "user", "version": 2, "pub": {}, "sub": {},
            "subs": -1, "data": -1, "payload": -1
        });
        let user_jwt = nats_jwt(&account, &user.public_key(), user_claims.clone());
        write_creds(creds, &user_jwt, &user.seed().expect("seed"));
        let other_account = nkeys::KeyPair::new_account();
        let other_user = nkeys::KeyPair::new_user();
        let other_jwt = nats_jwt(&other_account, &other_user.public_key(), user_claims);
        write_creds(stranger, &other_jwt, &other_user.seed().expect("seed"));
        // JetStream needs a system account in operator mode.
        let system = nkeys::KeyPair::new_account();
        let system_jwt = nats_jwt(
            &operator,
            &system.public_key(),
            serde_json::json!({"type": "account", "version": 2, "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1}}),
        );
        let authorization = format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{account_jwt}\"\n  {}: \"{system_jwt}\"\n}}\n",
            system.public_key(),
            account.public_key(),
            system.public_key(),
        );
        Self::start_with(pki, &authorization, String::new()).await
    }

    async fn start_with(pki: &Pki, authorization: &str, nkey_seed: String) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = format!(
            "listen: \"127.0.0.1:{port}\"\n\
             tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 2\n}}\n\
             jetstream {{\n  store_dir: \"{}\"\n}}\n{authorization}",
            pki.server_cert.display(),
            pki.server_key.display(),
            dir.path().join("js").display(),
        );
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, conf).expect("write nats.conf");
        let child = std::process::Command::new("nats-server")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server installed (the test command installs it)");
        let up = eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        assert!(up.is_some(), "nats-server with TLS did not start");
        Self {
            port,
            nkey_seed,
            _dir: dir,
            child,
        }
    }
}

impl Drop for TlsNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A NATS JWT (`ed25519-nkey`) for `subject`, signed by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, nats: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = serde_json::json!({
        "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": "orchestrator-tests",
        "sub": subject,
        "nats": nats,
    });
    let body = b64(claims.to_string().as_bytes());
    let signature = issuer
        .sign(format!("{header}.{body}").as_bytes())
        .expect("sign");
    format!("{header}.{body}.{}", b64(&signature))
}

fn write_creds(path: &Path, jwt: &str, seed: &str) {
    let text = format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    );
    write_private(path, text.as_bytes());
}

/// An https server on `localhost` that answers every request with `body`
/// (a JWKS), over rustls with the test PKI's server certificate.
#[derive(Debug)]
pub struct HttpsJwks {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsJwks {
    pub async fn start(pki: &Pki, body: String) -> Self {
        use tokio_rustls::rustls;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
            rustls::pki_types::pem::PemObject::pem_file_iter(&pki.server_cert)
                .expect("server PEM")
                .collect::<Result<_, _>>()
                .expect("server certificate");
        let key =
            rustls::pki_types::pem::PemObject::from_pem_file(&pki.server_key).expect("server key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let body = Arc::new(body);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match tls.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                        body.len(),
                        body
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self { port, task }
    }

    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/.well-known/jwks.json", self.port)
    }
}

impl Drop for HttpsJwks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes `text` to `path` readable by its owner only (Postgres refuses a
/// key others can read).
pub fn write_private(path: &Path, text: &[u8]) {
    std::fs::write(path, text).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}
