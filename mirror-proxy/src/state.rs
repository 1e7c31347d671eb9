//! State shared by every request and the background services: the live
//! (reloadable) settings, metrics, the id map and the diff queue.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use compare::{Differ, KeepRequest, Redaction, Redactor};
use tokio::sync::mpsc;

use crate::budget::InFlightBudget;
use crate::config::{Cli, DynamicSettings, StaticSettings};
use crate::correlation::IdMap;
use crate::diff_service::DiffJob;
use crate::metrics::Metrics;
use crate::sampling::Sampler;
use crate::tee::ShadowTarget;

/// Everything a reload replaces, compiled once per reload. A request takes
/// one `Arc<Live>` when it starts and keeps it to the end, so a reload
/// never changes the rules under a request in flight.
#[derive(Debug)]
pub struct Live {
    pub settings: DynamicSettings,
    pub primary: SocketAddr,
    pub sampler: Sampler,
    pub shadow: Option<ShadowTarget>,
    pub differ: Differ,
    /// What the diff log applies (keyed hashing, or disabled by `--no-redact`).
    pub redaction: Redaction,
    /// Always keyed: the capture file drops credentials with it even when
    /// the diff log is unredacted.
    pub redactor: Redactor,
}

impl Live {
    pub fn compile(
        settings: DynamicSettings,
        fixed: &StaticSettings,
        key: &[u8],
    ) -> anyhow::Result<Self> {
        let primary = settings
            .primary
            .address
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "primary address {:?} does not resolve",
                    settings.primary.address
                )
            })?;
        let sampler = Sampler::new(&settings.sampling)?;
        let shadow = settings.shadow.clone().map(ShadowTarget::new).transpose()?;
        let rules = crate::rules::load(settings.default_rules, &settings.rules)?;
        // Said at every start and reload: an overlay that accepts a
        // client-visible change is a decision someone must own.
        for (label, rule) in rules.contract_changes() {
            tracing::warn!(
                contract_change = %label,
                rule = %rule,
                "the diff rules accept a contract change: reports list it apart and the gate fails on it unless acknowledged"
            );
        }
        let redactor = Redactor::with_spec(key, rules.redact_spec())?;
        let redaction = if fixed.redact {
            Redaction::Keyed(redactor.clone())
        } else {
            Redaction::Disabled
        };
        let keep = if settings.keep_request_always {
            KeepRequest::Always
        } else {
            KeepRequest::WhenDiffers
        };
        Ok(Self {
            primary,
            sampler,
            shadow,
            differ: Differ::new(rules).keep_request(keep),
            redaction,
            redactor,
            settings,
        })
    }
}

#[derive(Debug)]
pub struct Shared {
    live: RwLock<Arc<Live>>,
    pub fixed: StaticSettings,
    pub cli: Cli,
    pub metrics: Metrics,
    pub ids: IdMap,
    /// Primary ETag → shadow ETag of status reads (conditional copies).
    pub etags: IdMap,
    /// The shadow's in-flight budget, one for the process: a reload resizes
    /// it and never starts a fresh one beside copies still running.
    pub in_flight: InFlightBudget,
    pub jobs: mpsc::Sender<DiffJob>,
    /// Set once the SIGHUP handler is installed; the readiness line waits
    /// for it, so a SIGHUP sent after "listening" can never kill the process.
    pub reload_ready: AtomicBool,
    redaction_key: Vec<u8>,
}

impl Shared {
    pub fn new(
        live: Live,
        fixed: StaticSettings,
        cli: Cli,
        redaction_key: Vec<u8>,
        jobs: mpsc::Sender<DiffJob>,
    ) -> Self {
        let ids = IdMap::new(
            live.settings.correlation.ttl,
            live.settings.correlation.max_entries,
        );
        let etags = IdMap::new(
            live.settings.correlation.ttl,
            live.settings.correlation.max_entries,
        );
        let in_flight =
            InFlightBudget::new(live.shadow.as_ref().map_or(0, |s| s.settings.max_in_flight));
        Self {
            in_flight,
            live: RwLock::new(Arc::new(live)),
            fixed,
            cli,
            metrics: Metrics::new(),
            ids,
            etags,
            jobs,
            reload_ready: AtomicBool::new(false),
            redaction_key,
        }
    }

    /// The settings new requests use.
    pub fn live(&self) -> Arc<Live> {
        // Readers never panic while holding the lock; ignore poison.
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Installs reloaded settings for requests that start from now on.
    pub fn replace(&self, live: Live) {
        for map in [&self.ids, &self.etags] {
            map.configure(
                live.settings.correlation.ttl,
                live.settings.correlation.max_entries,
            );
        }
        if let Some(shadow) = &live.shadow {
            self.in_flight.resize(shadow.settings.max_in_flight);
        }
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
    }

    pub fn redaction_key(&self) -> &[u8] {
        &self.redaction_key
    }
}
