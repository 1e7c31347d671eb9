//! Every dependency as production runs it (issue #16): private servers with
//! TLS on and real credentials, a throwaway CA, the real orchestrator
//! binary. Each mode must connect and serve; a wrong CA, a wrong host name
//! (`verify-full`) and wrong credentials must each stop the start with a
//! message naming the dependency and the reason; no secret may reach the
//! log.

use std::time::Duration;

use integration_tests::tls::{HttpsJwks, Pki, TlsNats, TlsRedis};
use integration_tests::{Options, PrivatePostgres, TestApp, accepted_id, eventually, send_body};
use serde_json::Value;

const DB_PASSWORD: &str = "db-pass-9f3b2c71";
const REDIS_PASSWORD: &str = "redis-pass-4d7e1a90";
const NATS_PASSWORD: &str = "nats-pass-c2b8e6f4";

fn args(list: &[String]) -> Options {
    Options {
        args: list.to_vec(),
        ..Options::default()
    }
}

/// Starts, accepts one message (so the dependency really works), and
/// checks no secret is in its log.
async fn serves(options: Options, secrets: &[&str]) -> TestApp {
    let app = TestApp::spawn(options).await;
    accepted_id(app.send(&send_body("over TLS"), None).await).await;
    for line in app.log_lines() {
        for secret in secrets {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
    app
}

async fn refused(options: Options, dependency: &str, reason: &[&str], secrets: &[&str]) {
    let error = TestApp::start_failure(options).await;
    assert!(error.contains(dependency), "names {dependency}: {error}");
    assert!(
        reason.iter().any(|r| error.contains(r)),
        "gives the reason ({reason:?}): {error}"
    );
    for secret in secrets {
        assert!(!error.contains(secret), "a secret in the error: {error}");
    }
}

#[tokio::test]
async fn postgres_over_tls_in_every_sslmode_with_password_or_certificate() {
    let pki = Pki::new();
    let pg = PrivatePostgres::start_tls(&pki, DB_PASSWORD).await;
    let password_file = pki.secret_file("db-password", &format!("{DB_PASSWORD}\n"));
    let url = |host: &str| format!("postgres://orch@{host}:{}/orch", pg.port);
    let base = |host: &str, mode: &str| {
        vec![
            format!("--database-url={}", url(host)),
            format!("--database-password-file={}", password_file.display()),
            format!("--database-sslmode={mode}"),
        ]
    };
    let ca = format!("--database-ssl-root-cert={}", pki.ca.display());
    let secrets = [DB_PASSWORD];

    // Unverified TLS (libpq's prefer and require) and verified TLS.
    for (mode, host, extra) in [
        ("prefer", "127.0.0.1", None),
        ("require", "127.0.0.1", None),
        ("verify-ca", "127.0.0.1", Some(ca.clone())),
        ("verify-full", "localhost", Some(ca.clone())),
    ] {
        let mut list = base(host, mode);
        list.extend(extra);
        serves(args(&list), &secrets).await;
    }
    // The password in the URL works too (libpq's way), and the URL's
    // sslmode parameters.
    serves(
        args(&[format!(
            "--database-url=postgres://orch:{DB_PASSWORD}@localhost:{}/orch?sslmode=verify-full&sslrootcert={}",
            pg.port,
            pki.ca.display()
        )]),
        &secrets,
    )
    .await;
    // A client certificate instead of a password (`hostssl … cert`).
    serves(
        args(&[
            format!(
                "--database-url=postgres://certuser@localhost:{}/certdb",
                pg.port
            ),
            "--database-sslmode=verify-full".into(),
            ca.clone(),
            format!("--database-ssl-cert={}", pki.client_cert.display()),
            format!("--database-ssl-key={}", pki.client_key.display()),
        ]),
        &secrets,
    )
    .await;

    // Each misconfiguration stops the start, naming the database and why.
    let dependency = "database (DATABASE_URL)";
    refused(
        args(&base("127.0.0.1", "disable")),
        dependency,
        &["no encryption", "pg_hba.conf"],
        &secrets,
    )
    .await;
    let mut wrong_ca = base("localhost", "verify-full");
    wrong_ca.push(format!(
        "--database-ssl-root-cert={}",
        pki.other_ca.display()
    ));
    refused(
        args(&wrong_ca),
        dependency,
        &["UnknownIssuer", "certificate"],
        &secrets,
    )
    .await;
    let mut wrong_host = base("127.0.0.1", "verify-full");
    wrong_host.push(ca.clone());
    refused(
        args(&wrong_host),
        dependency,
        &["NotValidForName", "not valid for"],
        &secrets,
    )
    .await;
    let mut wrong_password = base("localhost", "verify-full");
    wrong_password[1] = "--database-password=not-the-password".into();
    wrong_password.push(ca.clone());
    refused(
        args(&wrong_password),
        dependency,
        &["password authentication failed"],
        &["not-the-password"],
    )
    .await;
}

#[tokio::test]
async fn redis_over_tls_with_an_acl_user() {
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki, REDIS_PASSWORD).await;
    let password_file = pki.secret_file("redis-password", REDIS_PASSWORD);
    let with = |host: &str, ca: &std::path::Path, password: &str| {
        let mut list = vec![
            format!("--redis-url=rediss://{host}:{}", redis.port),
            format!("--redis-ca-file={}", ca.display()),
            format!("--redis-username={}", TlsRedis::USER),
        ];
        if password == REDIS_PASSWORD {
            list.push(format!("--redis-password-file={}", password_file.display()));
        } else {
            list.push(format!("--redis-password={password}"));
        }
        list
    };
    let app = serves(
        args(&with("localhost", &pki.ca, REDIS_PASSWORD)),
        &[REDIS_PASSWORD],
    )
    .await;
    let ready: Value = app
        .http
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["redis"], "ok", "{ready}");
    // The fast path really is that Redis: a key was written there.
    let r = app
        .send(&send_body("keyed over TLS"), Some("tls-key-1"))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        app.metric("orchestrator_idempotency_fast_path_errors_total")
            .await,
        0.0
    );

    let dependency = "redis (REDIS_URL)";
    refused(
        args(&with("localhost", &pki.other_ca, REDIS_PASSWORD)),
        dependency,
        &["UnknownIssuer", "certificate"],
        &[REDIS_PASSWORD],
    )
    .await;
    refused(
        args(&with("127.0.0.1", &pki.ca, REDIS_PASSWORD)),
        dependency,
        &["NotValidForName", "not valid for"],
        &[REDIS_PASSWORD],
    )
    .await;
    refused(
        args(&with("localhost", &pki.ca, "wrong-redis-password")),
        dependency,
        &["WRONGPASS", "invalid username-password", "authentication"],
        &["wrong-redis-password"],
    )
    .await;
}

#[tokio::test]
async fn nats_over_tls_with_an_nkey_or_a_password() {
    let pki = Pki::new();
    let nats = TlsNats::start(&pki, NATS_PASSWORD).await;
    let seed_file = pki.secret_file("nats.nk", &format!("{}\n", nats.nkey_seed));
    let password_file = pki.secret_file("nats-password", NATS_PASSWORD);
    let url = |host: &str| format!("tls://{host}:{}", nats.port);
    let with = |host: &str, ca: &std::path::Path, auth: Vec<String>| {
        let mut list = vec![
            format!("--nats-url={}", url(host)),
            format!("--nats-ca-file={}", ca.display()),
            "--nats-create-stream".into(),
        ];
        list.extend(auth);
        list
    };
    let nkey = vec![format!("--nats-nkey-seed-file={}", seed_file.display())];
    let password = vec![
        "--nats-user=orch".to_owned(),
        format!("--nats-password-file={}", password_file.display()),
    ];
    let secrets = [nats.nkey_seed.as_str(), NATS_PASSWORD];

    for auth in [nkey.clone(), password.clone()] {
        let app = serves(args(&with("localhost", &pki.ca, auth)), &secrets).await;
        let published = eventually(Duration::from_secs(10), || async {
            (app.metric("orchestrator_published_total{kind=\"real\"}")
                .await
                >= 1.0)
                .then_some(())
        })
        .await;
        assert!(published.is_some(), "published over TLS");
    }
    // Both events are in the default stream on that server, read back over
    // TLS with the same NKey.
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.ca.clone())
        .nkey(nats.nkey_seed.clone())
        .connect(url("localhost"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("SMS_OUTBOUND").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 2);

    let dependency = "nats (NATS_URL)";
    refused(
        args(&with("localhost", &pki.other_ca, nkey.clone())),
        dependency,
        &["UnknownIssuer", "certificate"],
        &secrets,
    )
    .await;
    refused(
        args(&with("127.0.0.1", &pki.ca, nkey.clone())),
        dependency,
        &["NotValidForName", "not valid for"],
        &secrets,
    )
    .await;
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    refused(
        args(&with(
            "localhost",
            &pki.ca,
            vec![format!("--nats-nkey-seed={stranger}")],
        )),
        dependency,
        &["authorization violation", "Authorization Violation"],
        &[stranger.as_str()],
    )
    .await;
    refused(
        args(&with(
            "localhost",
            &pki.ca,
            vec![
                "--nats-user=orch".into(),
                "--nats-password=wrong-nats-pass".into(),
            ],
        )),
        dependency,
        &["authorization violation", "Authorization Violation"],
        &["wrong-nats-pass"],
    )
    .await;
}

#[tokio::test]
async fn nats_over_tls_with_a_token() {
    const TOKEN: &str = "nats-token-5e1f0a7c";
    let pki = Pki::new();
    let nats = TlsNats::start_with_token(&pki, TOKEN).await;
    let token_file = pki.secret_file("nats-token", &format!("{TOKEN}\n"));
    let with = |token: String| {
        vec![
            format!("--nats-url=tls://localhost:{}", nats.port),
            format!("--nats-ca-file={}", pki.ca.display()),
            "--nats-create-stream".into(),
            token,
        ]
    };
    let app = serves(
        args(&with(format!("--nats-token-file={}", token_file.display()))),
        &[TOKEN],
    )
    .await;
    let published = eventually(Duration::from_secs(10), || async {
        (app.metric("orchestrator_published_total{kind=\"real\"}")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    assert!(published.is_some(), "published with the token");
    refused(
        args(&with("--nats-token=not-the-token".into())),
        "nats (NATS_URL)",
        &["authorization violation", "Authorization Violation"],
        &["not-the-token"],
    )
    .await;
}

#[tokio::test]
async fn nats_over_tls_with_a_creds_file_in_operator_mode() {
    let pki = Pki::new();
    let creds = pki.dir.path().join("orch.creds");
    let stranger = pki.dir.path().join("stranger.creds");
    let nats = TlsNats::start_operator(&pki, &creds, &stranger).await;
    let with = |file: &std::path::Path| {
        vec![
            format!("--nats-url=tls://localhost:{}", nats.port),
            format!("--nats-ca-file={}", pki.ca.display()),
            "--nats-create-stream".into(),
            format!("--nats-creds-file={}", file.display()),
        ]
    };
    let seed = std::fs::read_to_string(&creds).unwrap();
    let seed = seed
        .lines()
        .find(|l| l.starts_with("SU"))
        .expect("a seed in the creds file")
        .to_owned();
    let app = serves(args(&with(&creds)), &[seed.as_str()]).await;
    let published = eventually(Duration::from_secs(10), || async {
        (app.metric("orchestrator_published_total{kind=\"real\"}")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    assert!(published.is_some(), "published with the creds file");
    refused(
        args(&with(&stranger)),
        "nats (NATS_URL)",
        &["authorization violation", "Authorization Violation"],
        &[],
    )
    .await;
}

#[tokio::test]
async fn the_jwks_over_https_with_a_private_ca() {
    use jwt_simple::prelude::*;
    let pki = Pki::new();
    let key = ES256KeyPair::generate().with_key_id("tls-es-1");
    let jwks = serde_json::json!({"keys": [serde_json::from_str::<Value>(&key.public_key().to_jwk()).unwrap()]});
    let server = HttpsJwks::start(&pki, jwks.to_string()).await;
    let with = |host: &str, ca: &std::path::Path| {
        vec![
            format!("--jwt-jwks-url={}", server.url(host)),
            format!("--jwt-jwks-ca-file={}", ca.display()),
        ]
    };
    let app = TestApp::spawn(args(&with("localhost", &pki.ca))).await;
    let claims = Claims::with_custom_claims(
        serde_json::json!({"tenant_id": app.tenant}),
        jwt_simple::prelude::Duration::from_mins(5),
    );
    let token = key.sign(claims).unwrap();
    let r = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .bearer_auth(token)
        .header("X-Tenant-Id", &app.tenant)
        .json(&send_body("JWKS over https"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "a token signed by the https JWKS key verifies"
    );

    let dependency = "JWT verification keys";
    refused(
        args(&with("localhost", &pki.other_ca)),
        dependency,
        &["UnknownIssuer", "certificate"],
        &[],
    )
    .await;
    refused(
        args(&with("127.0.0.1", &pki.ca)),
        dependency,
        &["NotValidForName", "not valid for"],
        &[],
    )
    .await;
}

/// Secrets given as flags, environment or files never show in `--help`,
/// in the log of a start that fails, or in a `Debug` dump.
#[tokio::test]
async fn secrets_never_show_in_help_or_in_a_failed_start() {
    let pki = Pki::new();
    let env = [
        ("JWT_HS256_SECRET", "help-jwt-secret-0123456789abcdef0123"),
        ("SHADOW_SECRET", "help-shadow-secret-9876"),
        ("KEY_AUTH_SECRET", "help-key-auth-secret-5555"),
        ("DATABASE_PASSWORD", "help-db-password-1111"),
        ("REDIS_PASSWORD", "help-redis-password-2222"),
        ("NATS_TOKEN", "help-nats-token-3333"),
        (
            "DATABASE_URL",
            "postgres://u:help-url-password-4444@127.0.0.1:1/db",
        ),
    ];
    let help = std::process::Command::new(integration_tests::binary("orchestrator"))
        .arg("--help")
        .envs(env)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("JWT_HS256_SECRET_FILE"), "{text}");
    for (_, secret) in env {
        let secret = secret
            .split('@')
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap();
        assert!(!text.contains(secret), "{secret} in --help");
    }
    // A start that fails (nothing listens on the database port) with every
    // secret from a file.
    let files: Vec<(String, String)> = env
        .iter()
        .filter(|(name, _)| *name != "DATABASE_URL")
        .map(|(name, value)| {
            let path = pki.secret_file(name, value);
            (format!("{name}_FILE"), path.display().to_string())
        })
        .chain([("DATABASE_URL".to_owned(), env[6].1.to_owned())])
        .collect();
    let error = TestApp::start_failure(Options {
        env: files,
        no_default_secrets: true,
        args: vec!["--key-auth-secret-header=X-Kong-Secret".into()],
        ..Options::default()
    })
    .await;
    assert!(error.contains("database (DATABASE_URL)"), "{error}");
    for (_, secret) in env {
        let secret = secret
            .split('@')
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap();
        assert!(!error.contains(secret), "{secret} in: {error}");
    }
}
