//! Configuration, read the way the Dolittle Runtime reads it, so an existing deployment's
//! files and environment carry over.
//!
//! Every source becomes one flat map of case-insensitive key paths below `dolittle:runtime`
//! (`endpoints:private:port`), the model of .NET configuration: nested objects become
//! `:`-joined paths and arrays become index segments (`consents:0:stream`). Sources in
//! increasing precedence:
//! 1. built-in defaults (no file at all runs: data in `./data`, the Development tenant);
//! 2. `appsettings.json` in the working directory (its `dolittle:runtime` section);
//! 3. `.dolittle/runtime.json`, `.dolittle/runtime.yml` or `.dolittle/runtime.yaml` in the
//!    working directory, or the file given with `--config` (JSON or YAML by extension); then,
//!    without `--config`, the original's older files in `.dolittle/` (`endpoints`, `metrics`,
//!    `platform`, `microservices`, `resources`, `event-horizon-consents`), key by key over it;
//! 4. environment variables `DOLITTLE__RUNTIME__<KEY>__<KEY>...` (`__` separates segments);
//! 5. command-line flags.
//!
//! The typed [`RuntimeConfig`] is then read from the merged map; a value that does not parse
//! is an error naming its full key (`dolittle:runtime:endpoints:private:port`).
//!
//! annals' own settings live under `dolittle:runtime:annals` (`dataDirectory`, and `engine:*`
//! for the engine's [`EngineConfig`] in its kebab-case names).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use annals_engine::EngineConfig;

use crate::connections::ConnectionLimits;
use crate::disk::LowSpace;
use annals_replication::{Consent, ConsumerTls, HorizonConfig, ProducerAddress};
use serde_json::{Map, Value};
use uuid::Uuid;

// Read from the `platform:*` keys here; the type lives in annals-contract because reverse
// calls check heads against it.
pub use annals_contract::Platform;

/// The Development tenant: the one tenant of the embedded default.
pub const DEVELOPMENT_TENANT: Uuid = Uuid::from_u128(0x445f_8ea8_1a6f_40d7_b2fc_796d_ba92_dc44);
/// The "not set" customer id of the original's platform defaults.
pub const NOT_SET_CUSTOMER: Uuid = Uuid::from_u128(0xca90_0ec9_bae8_462e_b262_fa3e_fc82_5ca8);
/// The "not set" application id.
pub const NOT_SET_APPLICATION: Uuid = Uuid::from_u128(0x4fe9_492c_1d19_4e6b_be72_0320_8789_906e);
/// The "not set" microservice id.
pub const NOT_SET_MICROSERVICE: Uuid = Uuid::from_u128(0x4a5d_2bc3_543f_459a_ab0b_e8e9_2409_3260);

const ROOT: &str = "dolittle:runtime";
/// `annals:fetchCache` when it is not set.
const FETCH_CACHE_BYTES_DEFAULT: u64 = 32 << 20;
const ENV_PREFIX: &str = "DOLITTLE__RUNTIME__";

/// A configuration error: which key, which value, what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value does not parse as what its key needs.
    #[error("{ROOT}:{key}: {problem}")]
    Invalid {
        /// The key below `dolittle:runtime`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A configuration file cannot be read or parsed.
    #[error("configuration file {path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// One listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Port; 0 asks the OS for a free one (reported in the ready file).
    pub port: u16,
    /// Whether to listen at all.
    pub enabled: bool,
}

/// The listeners, with the original's default ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// Heads (SDKs): 50053.
    pub private: Endpoint,
    /// Other runtimes (event horizon): 50052.
    pub public: Endpoint,
    /// Management (CLI): 51052.
    pub management: Endpoint,
    /// Management over gRPC-Web (browsers), HTTP/1.1: 51152 (`endpoints:managementweb`).
    pub management_web: Endpoint,
    /// HTTP: `/healthz`: 8001.
    pub web: Endpoint,
    /// Prometheus `/metrics`: 9700.
    pub metrics: Endpoint,
    /// Heads of Contracts 5.4 (JavaScript SDK 17): 50055, annals' own (the original has no
    /// such port: Runtime 6 served those heads on its private port).
    pub legacy: Endpoint,
    /// The contract the private port speaks (`endpoints:private:contract`): 7.8.1, or 5.4 for
    /// heads that cannot be pointed at the legacy port.
    pub private_contract: Contract,
}

/// A generation of the Dolittle contracts a head port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Contract {
    /// Contracts 7.8.1 (Runtime 9 and its SDKs).
    #[default]
    Current,
    /// Contracts 5.4 (Runtime 6 and JavaScript SDK 17).
    Legacy,
}

impl Contract {
    /// As configured.
    pub fn name(self) -> &'static str {
        match self {
            Contract::Current => "7.8.1",
            Contract::Legacy => "5.4",
        }
    }
}

impl Endpoints {
    /// Each endpoint with its configuration name (`endpoints:<name>`).
    pub fn named(&self) -> [(&'static str, Endpoint); 7] {
        [
            ("private", self.private),
            ("public", self.public),
            ("management", self.management),
            ("managementweb", self.management_web),
            ("web", self.web),
            ("metrics", self.metrics),
            ("legacy", self.legacy),
        ]
    }
}

/// The whole effective configuration.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Platform identity.
    pub platform: Platform,
    /// Configured tenants (a call for any other tenant fails), in id order.
    pub tenants: Vec<Uuid>,
    /// Listeners.
    pub endpoints: Endpoints,
    /// Address every listener binds (default 0.0.0.0, as the original).
    pub listen_address: IpAddr,
    /// Where the engine keeps its data (`annals:dataDirectory`, default `./data`).
    pub data_dir: PathBuf,
    /// Engine settings (`annals:engine:*`); its `data_dir` is `data_dir`.
    pub engine: EngineConfig,
    /// Where `POST /export` on the web port writes dumps (`annals:exportDirectory`); exports
    /// of the running runtime are refused unless it is set.
    pub export_dir: Option<PathBuf>,
    /// The event horizon: consents, producer addresses, whether consent is required, and TLS
    /// to producers.
    pub horizon: HorizonConfig,
    /// TLS on the public port (`annals:tls:public:*`); none serves plaintext, as the original.
    pub public_tls: Option<PublicTls>,
    /// How long projections keep the history of their states
    /// (`annals:projections:historyRetention`, e.g. `30d`, `12h`): states as of points older
    /// than that are trimmed. None (the default) keeps all of it.
    pub projection_history_retention: Option<std::time::Duration>,
    /// What one client may hold of a gRPC port (`annals:connections:*`, `annals:http2:*`).
    pub connections: ConnectionLimits,
    /// The web origins (`https://studio.example:8080`, or `*` for any) whose pages may call
    /// the gRPC-Web port (`endpoints:managementweb:allowedOrigins`, a list or one
    /// comma-separated text). Empty (the default, as the original) answers no CORS request:
    /// only pages served from the port's own origin, or tools that are not browsers, call it.
    pub management_web_origins: Vec<String>,
    /// Below how much free space the data directory's disk is low (`annals:disk:lowSpace`).
    pub disk_low_space: LowSpace,
    /// The bytes of FetchForAggregate answers kept for aggregates that have not changed
    /// since (`annals:fetchCache`, a size such as `32 MiB`; default 32 MiB, 0 keeps none).
    pub fetch_cache_bytes: u64,
    /// The merged key-value map (lower-case keys below `dolittle:runtime`), for the
    /// management Configuration service.
    pub merged: BTreeMap<String, Value>,
}

/// Where configuration comes from besides the defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The working directory whose `appsettings.json` and `.dolittle/runtime.*` are read.
    pub working_dir: PathBuf,
    /// `--config PATH`: read this file instead of `.dolittle/runtime.*`.
    pub config_file: Option<PathBuf>,
    /// Environment variables (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
    /// Command-line overrides as (key below `dolittle:runtime`, value).
    pub overrides: Vec<(String, Value)>,
}

impl RuntimeConfig {
    /// Reads and merges every source, then checks and types the result.
    pub fn load(sources: &Sources) -> Result<RuntimeConfig, ConfigError> {
        let mut merged = BTreeMap::new();
        let appsettings = sources.working_dir.join("appsettings.json");
        if appsettings.is_file() {
            let value = read_file(&appsettings)?;
            if let Some(section) = section(&value, &["dolittle", "runtime"]) {
                flatten(section, String::new(), &mut merged);
            }
        }
        let files = match &sources.config_file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError::File {
                        path: path.clone(),
                        problem: "no such file".into(),
                    });
                }
                vec![path.clone()]
            }
            None => ["runtime.json", "runtime.yml", "runtime.yaml"]
                .iter()
                .map(|name| sources.working_dir.join(".dolittle").join(name))
                .filter(|path| path.is_file())
                .collect(),
        };
        for path in &files {
            flatten(&read_file(path)?, String::new(), &mut merged);
        }
        if sources.config_file.is_none() {
            legacy_files(&sources.working_dir.join(".dolittle"), &mut merged)?;
        }
        for (name, value) in &sources.env {
            if name.len() > ENV_PREFIX.len()
                && name.is_char_boundary(ENV_PREFIX.len())
                && name[..ENV_PREFIX.len()].eq_ignore_ascii_case(ENV_PREFIX)
            {
                let key = name[ENV_PREFIX.len()..]
                    .replace("__", ":")
                    .to_ascii_lowercase();
                merged.insert(key, Value::String(value.clone()));
            }
        }
        for (key, value) in &sources.overrides {
            merged.insert(key.to_ascii_lowercase(), value.clone());
        }
        Self::from_merged(merged, &sources.working_dir)
    }

    fn from_merged(
        merged: BTreeMap<String, Value>,
        working_dir: &Path,
    ) -> Result<RuntimeConfig, ConfigError> {
        for key in merged.keys() {
            let top = key.split(':').next().unwrap_or_default();
            if !KNOWN_SECTIONS.contains(&top) {
                tracing::warn!(key = %format!("{ROOT}:{key}"), "unknown configuration key, ignored");
            }
        }
        let get = |key: &str| merged.get(key);
        let platform = Platform {
            customer_id: uuid_or(
                get("platform:customerid"),
                "platform:customerID",
                NOT_SET_CUSTOMER,
            )?,
            customer_name: string_or(get("platform:customername"), "[Not Set]"),
            application_id: uuid_or(
                get("platform:applicationid"),
                "platform:applicationID",
                NOT_SET_APPLICATION,
            )?,
            application_name: string_or(get("platform:applicationname"), "[Not Set]"),
            microservice_id: uuid_or(
                get("platform:microserviceid"),
                "platform:microserviceID",
                NOT_SET_MICROSERVICE,
            )?,
            microservice_name: string_or(get("platform:microservicename"), "[Not Set]"),
            environment: string_or(get("platform:environment"), "Development"),
        };
        let mut tenants = Vec::new();
        for key in merged.keys() {
            let mut parts = key.split(':');
            if parts.next() == Some("tenants") {
                if let Some(id) = parts.next() {
                    let tenant = Uuid::parse_str(id).map_err(|_| {
                        invalid(&format!("tenants:{id}"), "a tenant id must be a GUID")
                    })?;
                    if tenants.last() != Some(&tenant) && !tenants.contains(&tenant) {
                        tenants.push(tenant);
                    }
                }
            }
        }
        tenants.sort();
        if tenants.is_empty() {
            tenants.push(DEVELOPMENT_TENANT);
        }
        let endpoint = |name: &str, default_port: u16| -> Result<Endpoint, ConfigError> {
            let port_key = format!("endpoints:{name}:port");
            let port = match get(&port_key) {
                None => default_port,
                Some(value) => scalar(value).parse::<u16>().map_err(|_| {
                    invalid(&port_key, format!("{value} is not a port number (0-65535)"))
                })?,
            };
            let enabled_key = format!("endpoints:{name}:enabled");
            let enabled = bool_or(get(&enabled_key), &enabled_key, true)?;
            Ok(Endpoint { port, enabled })
        };
        let endpoints = Endpoints {
            private: endpoint("private", 50053)?,
            public: endpoint("public", 50052)?,
            management: endpoint("management", 51052)?,
            management_web: endpoint("managementweb", 51152)?,
            web: endpoint("web", 8001)?,
            metrics: endpoint("metrics", 9700)?,
            legacy: endpoint("legacy", 50055)?,
            private_contract: match get("endpoints:private:contract").map(scalar).as_deref() {
                None | Some("7.8.1" | "7") => Contract::Current,
                Some("5.4" | "5") => Contract::Legacy,
                Some(other) => {
                    return Err(invalid(
                        "endpoints:private:contract",
                        format!("{other} is not a contracts version annals speaks (7.8.1 or 5.4)"),
                    ))
                }
            },
        };
        let mut used = BTreeMap::new();
        for (name, e) in endpoints.named() {
            if e.enabled && e.port != 0 {
                if let Some(other) = used.insert(e.port, name) {
                    return Err(invalid(
                        &format!("endpoints:{name}:port"),
                        format!("port {} is also the {other} endpoint's", e.port),
                    ));
                }
            }
        }
        if !endpoints.private.enabled {
            return Err(invalid(
                "endpoints:private:enabled",
                "the private endpoint is how heads reach the runtime and cannot be disabled",
            ));
        }
        let listen_address = match get("annals:listenaddress") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(value) => scalar(value).parse().map_err(|_| {
                invalid(
                    "annals:listenAddress",
                    format!("{value} is not an IP address"),
                )
            })?,
        };
        let data_dir = match get("annals:datadirectory") {
            None => working_dir.join("data"),
            Some(value) => working_dir.join(scalar(value)),
        };
        let export_dir = get("annals:exportdirectory").map(|value| working_dir.join(scalar(value)));
        let engine_value = nest(&merged, "annals:engine:");
        let mut engine: EngineConfig = serde_json::from_value(engine_value)
            .map_err(|e| invalid("annals:engine", e.to_string()))?;
        engine.log.data_dir.clone_from(&data_dir);
        engine
            .validate()
            .map_err(|e| invalid("annals:engine", e.to_string()))?;
        let mut horizon = horizon(&merged)?;
        horizon.consumer_tls = consumer_tls(&merged, working_dir)?;
        let public_tls = public_tls(&merged, working_dir)?;
        let projection_history_retention = match get("annals:projections:historyretention") {
            None => None,
            Some(value) => Some(retention(&scalar(value)).ok_or_else(|| {
                invalid(
                    "annals:projections:historyRetention",
                    format!(
                        "{value} is not a duration: a whole number and d, h, m or s (30d, 12h)"
                    ),
                )
            })?),
        };
        let connections = connection_limits(&get)?;
        let management_web_origins = allowed_origins(&merged)?;
        let disk_low_space = match get("annals:disk:lowspace") {
            None => LowSpace::default(),
            Some(value) => LowSpace::parse(&scalar(value)).ok_or_else(|| {
                invalid(
                    "annals:disk:lowSpace",
                    format!("{value} is neither a share (5%) nor a size (2 GiB)"),
                )
            })?,
        };
        let fetch_cache_bytes = match get("annals:fetchcache") {
            None => FETCH_CACHE_BYTES_DEFAULT,
            Some(value) => scalar(value)
                .trim()
                .parse::<bytesize::ByteSize>()
                .map_err(|_| {
                    invalid(
                        "annals:fetchCache",
                        format!("{value} is not a size (32 MiB, 0 for none)"),
                    )
                })?
                .as_u64(),
        };
        Ok(RuntimeConfig {
            platform,
            tenants,
            endpoints,
            listen_address,
            data_dir,
            engine,
            export_dir,
            horizon,
            public_tls,
            projection_history_retention,
            connections,
            management_web_origins,
            disk_low_space,
            fetch_cache_bytes,
            merged,
        })
    }

    /// The effective `dolittle:runtime` section as YAML (what the management Configuration
    /// service returns): its sections at the top level, as the original writes them, from the
    /// merged sources with the defaults filled in.
    pub fn to_yaml(&self) -> String {
        let p = &self.platform;
        let mut effective = self.merged.clone();
        let mut put = |key: &str, value: Value| {
            effective.insert(key.to_owned(), value);
        };
        put(
            "platform:customerid",
            Value::String(p.customer_id.to_string()),
        );
        put(
            "platform:customername",
            Value::String(p.customer_name.clone()),
        );
        put(
            "platform:applicationid",
            Value::String(p.application_id.to_string()),
        );
        put(
            "platform:applicationname",
            Value::String(p.application_name.clone()),
        );
        put(
            "platform:microserviceid",
            Value::String(p.microservice_id.to_string()),
        );
        put(
            "platform:microservicename",
            Value::String(p.microservice_name.clone()),
        );
        put("platform:environment", Value::String(p.environment.clone()));
        for (name, e) in self.endpoints.named() {
            put(&format!("endpoints:{name}:port"), Value::from(e.port));
            put(&format!("endpoints:{name}:enabled"), Value::Bool(e.enabled));
        }
        put(
            "endpoints:private:contract",
            Value::String(self.endpoints.private_contract.name().to_owned()),
        );
        for tenant in &self.tenants {
            let key = format!("tenants:{tenant}");
            if !self.merged.keys().any(|k| k.starts_with(&key)) {
                put(&key, Value::Object(Map::new()));
            }
        }
        put(
            "annals:datadirectory",
            Value::String(self.data_dir.display().to_string()),
        );
        let mut tree = nest(&effective, "");
        rename_keys(&mut tree, &mut Vec::new());
        serde_norway::to_string(&tree).unwrap_or_else(|e| format!("# {e}\n"))
    }
}

/// The top-level sections of `dolittle:runtime` that mean something (others are warned of).
const KNOWN_SECTIONS: &[&str] = &[
    "platform",
    "tenants",
    "endpoints",
    "microservices",
    "eventhorizon",
    "reversecalls",
    "processing",
    "opentelemetry",
    "annals",
];

/// The spellings of known keys (the merged map keeps them lower-case).
const NAMES: &[(&str, &str)] = &[
    ("customerid", "customerID"),
    ("customername", "customerName"),
    ("applicationid", "applicationID"),
    ("applicationname", "applicationName"),
    ("microserviceid", "microserviceID"),
    ("microservicename", "microserviceName"),
    ("managementweb", "managementWeb"),
    ("eventhorizon", "eventHorizon"),
    ("eventhorizons", "eventHorizons"),
    ("requireconsent", "requireConsent"),
    ("eventstore", "eventStore"),
    ("readmodels", "readModels"),
    ("connectionstring", "connectionString"),
    ("consumertenant", "consumerTenant"),
    ("windowevents", "windowEvents"),
    ("clientcertificateauthority", "clientCertificateAuthority"),
    ("certificateauthority", "certificateAuthority"),
    ("reversecalls", "reverseCalls"),
    ("useactors", "useActors"),
    ("datadirectory", "dataDirectory"),
    ("exportdirectory", "exportDirectory"),
    ("listenaddress", "listenAddress"),
    ("maxconnectionpoolsize", "maxConnectionPoolSize"),
    ("usessl", "useSSL"),
    ("servicename", "serviceName"),
    ("maxperport", "maxPerPort"),
    ("lowspace", "lowSpace"),
    ("fetchcache", "fetchCache"),
    ("handshaketimeout", "handshakeTimeout"),
    ("maxconcurrentstreams", "maxConcurrentStreams"),
    ("keepaliveinterval", "keepAliveInterval"),
    ("keepalivetimeout", "keepAliveTimeout"),
];

/// Spells keys as the original's configuration YAML does: section names (and the resource
/// sections of a tenant) in camel case, the settings inside them in Pascal case (the .NET
/// property names: `Port`, `MicroserviceID`), ids and the engine's kebab-case keys as they are.
fn rename_keys(value: &mut Value, path: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            for (key, mut inner) in entries {
                let name = spell(&key, path);
                path.push(key);
                rename_keys(&mut inner, path);
                path.pop();
                map.insert(name, inner);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_keys(v, path)),
        _ => {}
    }
}

fn spell(key: &str, path: &[String]) -> String {
    let camel = NAMES
        .iter()
        .find(|(lower, _)| *lower == key)
        .map_or_else(|| key.to_owned(), |(_, name)| (*name).to_owned());
    let section = path.first().map(String::as_str);
    let camel_here = path.is_empty()
        || Uuid::parse_str(key).is_ok()
        || key.chars().all(|c| c.is_ascii_digit())
        || (section == Some("tenants")
            && ["resources", "eventstore", "readmodels", "eventhorizons"].contains(&key))
        || (section == Some("endpoints")
            && path.len() == 1
            && ["web", "metrics", "legacy"].contains(&key))
        || (section == Some("annals") && path.iter().any(|p| p == "engine"))
        || (section == Some("annals") && key == "engine");
    if camel_here {
        return camel;
    }
    let mut chars = camel.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

/// TLS on the public port, where other runtimes connect: this runtime's certificate and key
/// and, when set, the authorities a client certificate must chain to (without one, a client
/// is refused). All PEM, read at start-up.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicTls {
    /// Certificate chain (`annals:tls:public:certificate`).
    pub certificate_pem: Vec<u8>,
    /// Its private key (`annals:tls:public:key`).
    pub key_pem: Vec<u8>,
    /// Authorities of the client certificates required (`annals:tls:public:clientCertificateAuthority`).
    pub client_certificate_authority_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for PublicTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a private key.
        f.debug_struct("PublicTls")
            .field("certificate_bytes", &self.certificate_pem.len())
            .field(
                "client_certificates_required",
                &self.client_certificate_authority_pem.is_some(),
            )
            .finish_non_exhaustive()
    }
}

/// A PEM file named by `key` (relative to the working directory), read whole; none when the
/// key is not set.
fn pem_file(
    merged: &BTreeMap<String, Value>,
    working_dir: &Path,
    key: &str,
    name: &str,
) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(value) = merged.get(key) else {
        return Ok(None);
    };
    let path = working_dir.join(scalar(value));
    let bytes = std::fs::read(&path)
        .map_err(|e| invalid(name, format!("cannot read {}: {e}", path.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(invalid(
            name,
            format!("{} is not a PEM file", path.display()),
        ));
    }
    Ok(Some(bytes))
}

fn public_tls(
    merged: &BTreeMap<String, Value>,
    working_dir: &Path,
) -> Result<Option<PublicTls>, ConfigError> {
    let certificate = pem_file(
        merged,
        working_dir,
        "annals:tls:public:certificate",
        "annals:tls:public:certificate",
    )?;
    let key = pem_file(
        merged,
        working_dir,
        "annals:tls:public:key",
        "annals:tls:public:key",
    )?;
    let client_ca = pem_file(
        merged,
        working_dir,
        "annals:tls:public:clientcertificateauthority",
        "annals:tls:public:clientCertificateAuthority",
    )?;
    match (certificate, key) {
        (Some(certificate_pem), Some(key_pem)) => Ok(Some(PublicTls {
            certificate_pem,
            key_pem,
            client_certificate_authority_pem: client_ca,
        })),
        (None, None) if client_ca.is_none() => Ok(None),
        (None, _) => Err(invalid(
            "annals:tls:public:certificate",
            "TLS on the public port needs a certificate and its key",
        )),
        (Some(_), None) => Err(invalid(
            "annals:tls:public:key",
            "TLS on the public port needs a certificate and its key",
        )),
    }
}

fn consumer_tls(
    merged: &BTreeMap<String, Value>,
    working_dir: &Path,
) -> Result<Option<ConsumerTls>, ConfigError> {
    let authority = pem_file(
        merged,
        working_dir,
        "annals:tls:consumer:certificateauthority",
        "annals:tls:consumer:certificateAuthority",
    )?;
    let certificate = pem_file(
        merged,
        working_dir,
        "annals:tls:consumer:certificate",
        "annals:tls:consumer:certificate",
    )?;
    let key = pem_file(
        merged,
        working_dir,
        "annals:tls:consumer:key",
        "annals:tls:consumer:key",
    )?;
    let identity_pem = match (certificate, key) {
        (Some(certificate), Some(key)) => Some((certificate, key)),
        (None, None) => None,
        _ => return Err(invalid(
            "annals:tls:consumer:certificate",
            "a client certificate needs its key (annals:tls:consumer:key) and the other way round",
        )),
    };
    match authority {
        Some(certificate_authority_pem) => Ok(Some(ConsumerTls {
            certificate_authority_pem,
            identity_pem,
        })),
        None if identity_pem.is_none() => Ok(None),
        None => Err(invalid(
            "annals:tls:consumer:certificateAuthority",
            "TLS to producers needs the certificate authority their certificates chain to",
        )),
    }
}

/// The event horizon's settings, from the original's keys: consents under
/// `tenants:<producer tenant>:eventHorizons:<consumer microservice>:consents:<i>:*`, producer
/// addresses under `microservices:<id>:host` and `:port`, and `eventHorizon:requireConsent`.
fn horizon(merged: &BTreeMap<String, Value>) -> Result<HorizonConfig, ConfigError> {
    let get = |key: &str| merged.get(key);
    let require_consent = bool_or(
        get("eventhorizon:requireconsent"),
        "eventHorizon:requireConsent",
        true,
    )?;
    // (producer tenant, consumer microservice, index) -> the consent's keys.
    let mut consents: BTreeMap<(Uuid, Uuid, u64), BTreeMap<&str, &Value>> = BTreeMap::new();
    let mut producers: BTreeMap<Uuid, BTreeMap<&str, &Value>> = BTreeMap::new();
    for (key, value) in merged {
        let parts: Vec<&str> = key.split(':').collect();
        match parts.as_slice() {
            ["tenants", tenant, "eventhorizons", microservice, "consents", index, field] => {
                let guid = |text: &str, what: &str| {
                    Uuid::parse_str(text)
                        .map_err(|_| invalid(key, format!("the {what} {text} is not a GUID")))
                };
                let index = index.parse::<u64>().map_err(|_| {
                    invalid(
                        key,
                        "consents is a list of {consumerTenant, stream, partition, consent}",
                    )
                })?;
                consents
                    .entry((
                        guid(tenant, "producer tenant")?,
                        guid(microservice, "consumer microservice")?,
                        index,
                    ))
                    .or_default()
                    .insert(field, value);
            }
            ["microservices", microservice, field] => {
                let id = Uuid::parse_str(microservice).map_err(|_| {
                    invalid(
                        key,
                        format!("the microservice id {microservice} is not a GUID"),
                    )
                })?;
                producers.entry(id).or_default().insert(field, value);
            }
            _ => {}
        }
    }
    let consents = consents
        .into_iter()
        .map(
            |((producer_tenant, consumer_microservice, index), fields)| {
                let at = format!(
                "tenants:{producer_tenant}:eventHorizons:{consumer_microservice}:consents:{index}"
            );
                let guid = |field: &str, name: &str| -> Result<Uuid, ConfigError> {
                    let value = fields
                        .get(field)
                        .ok_or_else(|| invalid(&format!("{at}:{name}"), "missing"))?;
                    Uuid::parse_str(&scalar(value)).map_err(|_| {
                        invalid(&format!("{at}:{name}"), format!("{value} is not a GUID"))
                    })
                };
                Ok(Consent {
                    producer_tenant,
                    consumer_microservice,
                    consumer_tenant: guid("consumertenant", "consumerTenant")?,
                    stream: guid("stream", "stream")?,
                    partition: fields
                        .get("partition")
                        .map(|v| scalar(v))
                        .ok_or_else(|| invalid(&format!("{at}:partition"), "missing"))?,
                    consent: guid("consent", "consent")?,
                })
            },
        )
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let producers = producers
        .into_iter()
        .map(|(id, fields)| {
            let host = fields
                .get("host")
                .map(|v| scalar(v))
                .filter(|h| !h.is_empty())
                .ok_or_else(|| invalid(&format!("microservices:{id}:host"), "missing"))?;
            let port = match fields.get("port") {
                None => 50052,
                Some(value) => scalar(value).parse::<u16>().map_err(|_| {
                    invalid(
                        &format!("microservices:{id}:port"),
                        format!("{value} is not a port number (0-65535)"),
                    )
                })?,
            };
            Ok((id, ProducerAddress { host, port }))
        })
        .collect::<Result<BTreeMap<_, _>, ConfigError>>()?;
    let window_events = match get("annals:eventhorizon:windowevents") {
        None => HorizonConfig::default().window_events,
        Some(value) => scalar(value)
            .parse::<usize>()
            .ok()
            .filter(|&n| (1..=100_000).contains(&n))
            .ok_or_else(|| {
                invalid(
                    "annals:eventHorizon:windowEvents",
                    format!("{value} is not a number of events from 1 to 100000"),
                )
            })?,
    };
    Ok(HorizonConfig {
        require_consent,
        consents,
        producers,
        consumer_tls: None,
        window_events,
    })
}

/// `annals:connections:*` and `annals:http2:*`, each defaulting to `ConnectionLimits`'.
fn connection_limits<'a>(
    get: &impl Fn(&str) -> Option<&'a Value>,
) -> Result<ConnectionLimits, ConfigError> {
    let defaults = ConnectionLimits::default();
    let count = |key: &str, name: &str, default: u64| -> Result<u64, ConfigError> {
        match get(key) {
            None => Ok(default),
            Some(value) => scalar(value)
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
                .ok_or_else(|| invalid(name, format!("{value} is not a whole number from 1"))),
        }
    };
    let duration = |key: &str, name: &str, default: std::time::Duration| match get(key) {
        None => Ok(default),
        Some(value) => retention(&scalar(value)).ok_or_else(|| {
            invalid(
                name,
                format!("{value} is not a duration: a whole number and d, h, m or s (10s)"),
            )
        }),
    };
    Ok(ConnectionLimits {
        max_per_port: usize::try_from(count(
            "annals:connections:maxperport",
            "annals:connections:maxPerPort",
            defaults.max_per_port as u64,
        )?)
        .unwrap_or(usize::MAX),
        handshake_timeout: duration(
            "annals:connections:handshaketimeout",
            "annals:connections:handshakeTimeout",
            defaults.handshake_timeout,
        )?,
        max_concurrent_streams: u32::try_from(count(
            "annals:http2:maxconcurrentstreams",
            "annals:http2:maxConcurrentStreams",
            u64::from(defaults.max_concurrent_streams),
        )?)
        .unwrap_or(u32::MAX),
        keep_alive_interval: duration(
            "annals:http2:keepaliveinterval",
            "annals:http2:keepAliveInterval",
            defaults.keep_alive_interval,
        )?,
        keep_alive_timeout: duration(
            "annals:http2:keepalivetimeout",
            "annals:http2:keepAliveTimeout",
            defaults.keep_alive_timeout,
        )?,
    })
}

/// A duration as a whole number and its unit: `d`, `h`, `m` or `s` (at least a second).
fn retention(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let seconds_per = match unit {
        'd' => 86_400,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => return None,
    };
    let count: u64 = text[..text.len() - 1].parse().ok()?;
    let seconds = count.checked_mul(seconds_per).filter(|&s| s > 0)?;
    Some(std::time::Duration::from_secs(seconds))
}

fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        problem: e.to_string(),
    })?;
    let yaml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"));
    let parsed: Result<Value, String> = if yaml {
        serde_norway::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    };
    let value = parsed.map_err(|problem| ConfigError::File {
        path: path.to_owned(),
        problem,
    })?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(ConfigError::File {
            path: path.to_owned(),
            problem: "the top level must be a mapping of keys".into(),
        }),
    }
}

/// The files of the original's older layout in `.dolittle/` (the name without its extension
/// counts: `.json`, `.yml` or `.yaml`), which it still reads after `runtime.*`, each setting
/// what it names key by key over it:
/// - `endpoints`: `endpoints:*`; `metrics` (`{"port": 9700}`): `endpoints:metrics:*`;
/// - `platform`: `platform:*`; `microservices`: `microservices:*`;
/// - `resources` (keyed by tenant): `tenants:<tenant>:resources:*`, replacing every `tenants`
///   key set before it, as the original;
/// - `event-horizon-consents` (keyed by producer tenant, a list of `{microservice, tenant,
///   stream, partition, consent}`): `tenants:<producer>:eventHorizons:<microservice>:consents`,
///   each `tenant` as `consumerTenant`.
///
/// The original maps them in the directory's listing order, so consents listed before
/// `resources` are lost; here `resources` always comes first.
fn legacy_files(dir: &Path, merged: &mut BTreeMap<String, Value>) -> Result<(), ConfigError> {
    let find = |name: &str| {
        ["json", "yml", "yaml"]
            .iter()
            .map(|ext| dir.join(format!("{name}.{ext}")))
            .find(|path| path.is_file())
    };
    let read = |name: &str| {
        find(name)
            .map(|path| read_file(&path).map(|v| (path, v)))
            .transpose()
    };
    if let Some((_, resources)) = read("resources")? {
        merged.retain(|key, _| key.split(':').next() != Some("tenants"));
        if let Value::Object(tenants) = &resources {
            for (tenant, resources) in tenants {
                flatten(
                    resources,
                    format!("tenants:{}:resources", tenant.to_ascii_lowercase()),
                    merged,
                );
            }
        }
    }
    for (name, prefix) in [
        ("endpoints", "endpoints"),
        ("metrics", "endpoints:metrics"),
        ("platform", "platform"),
        ("microservices", "microservices"),
    ] {
        if let Some((_, value)) = read(name)? {
            flatten(&value, prefix.to_owned(), merged);
        }
    }
    if let Some((path, consents)) = read("event-horizon-consents")? {
        let problem = |problem: &str| ConfigError::File {
            path: path.clone(),
            problem: problem.to_owned(),
        };
        let Value::Object(producers) = &consents else {
            return Err(problem(
                "the top level must be a mapping of producer tenants",
            ));
        };
        for (producer, entries) in producers {
            let Value::Array(entries) = entries else {
                return Err(problem(&format!(
                    "the consents of producer tenant {producer} must be a list"
                )));
            };
            let mut per_microservice: BTreeMap<String, usize> = BTreeMap::new();
            for entry in entries {
                let field = |name: &str| section(entry, &[name]).cloned();
                let microservice = match field("microservice") {
                    Some(Value::String(id)) => id.to_ascii_lowercase(),
                    _ => {
                        return Err(problem(&format!(
                            "a consent of producer tenant {producer} has no microservice"
                        )))
                    }
                };
                let index = per_microservice.entry(microservice.clone()).or_insert(0);
                let at = format!(
                    "tenants:{}:eventhorizons:{microservice}:consents:{index}",
                    producer.to_ascii_lowercase()
                );
                *index += 1;
                for (from, to) in [
                    ("tenant", "consumertenant"),
                    ("stream", "stream"),
                    ("partition", "partition"),
                    ("consent", "consent"),
                ] {
                    if let Some(value) = field(from) {
                        merged.insert(format!("{at}:{to}"), value);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The sub-object at a path of keys (matched case-insensitively).
fn section<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    let mut at = value;
    for name in path {
        at = at
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))?
            .1;
    }
    Some(at)
}

/// `endpoints:managementweb:allowedOrigins`: each origin a browser sends (scheme, host and
/// port, no path), or `*`.
fn allowed_origins(merged: &BTreeMap<String, Value>) -> Result<Vec<String>, ConfigError> {
    const KEY: &str = "endpoints:managementweb:allowedorigins";
    const NAME: &str = "endpoints:managementweb:allowedOrigins";
    let mut origins = Vec::new();
    for (key, value) in merged.range(KEY.to_owned()..) {
        if !key.starts_with(KEY) {
            break;
        }
        if key.len() > KEY.len() && !key[KEY.len()..].starts_with(':') {
            continue;
        }
        for origin in scalar(value)
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
        {
            let well_formed = origin == "*"
                || origin.split_once("://").is_some_and(|(scheme, rest)| {
                    matches!(scheme, "http" | "https")
                        && !rest.is_empty()
                        && !rest.contains(['/', '?', '#', ' '])
                        && rest.is_ascii()
                });
            if !well_formed {
                return Err(invalid(
                    NAME,
                    format!(
                        "{origin} is not an origin: scheme, host and port as a browser sends \
                         it (https://studio.example.com:8080), or * for any"
                    ),
                ));
            }
            // Browsers send scheme and host in lower case.
            let origin = origin.to_ascii_lowercase();
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
    }
    Ok(origins)
}

/// Flattens a tree into lower-case `:`-joined keys; arrays by index. Empty objects stay as
/// keys of their own (a tenant configured with no settings is still a tenant).
fn flatten(value: &Value, prefix: String, out: &mut BTreeMap<String, Value>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_ascii_lowercase()
        } else {
            format!("{prefix}:{}", k.to_ascii_lowercase())
        }
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(v, join(k), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(v, join(&i.to_string()), out);
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix, value.clone());
        }
        _ => {}
    }
}

/// The keys below `prefix` as a tree; string leaves that read as JSON numbers or booleans
/// (environment variables and flags are strings) become those.
fn nest(flat: &BTreeMap<String, Value>, prefix: &str) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in flat.range(prefix.to_owned()..) {
        let Some(rest) = key.strip_prefix(prefix) else {
            break;
        };
        let mut at = &mut root;
        for part in rest.split(':') {
            if !at.is_object() {
                *at = Value::Object(Map::new());
            }
            let Value::Object(map) = at else { break };
            at = map.entry(part.to_owned()).or_insert(Value::Null);
        }
        *at = match value {
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
                _ => value.clone(),
            },
            other => other.clone(),
        };
    }
    arrays(&mut root);
    root
}

/// Objects whose keys are exactly 0..n become arrays (the index segments of flattening).
fn arrays(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(arrays);
            let n = map.len();
            if n > 0 && (0..n).all(|i| map.contains_key(&i.to_string())) {
                let items = (0..n)
                    .map(|i| map.remove(&i.to_string()).unwrap_or(Value::Null))
                    .collect();
                *value = Value::Array(items);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(arrays),
        _ => {}
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    }
}

fn string_or(value: Option<&Value>, default: &str) -> String {
    value.map_or_else(|| default.to_owned(), scalar)
}

fn uuid_or(value: Option<&Value>, key: &str, default: Uuid) -> Result<Uuid, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => {
            Uuid::parse_str(&scalar(v)).map_err(|_| invalid(key, format!("{v} is not a GUID")))
        }
    }
}

fn bool_or(value: Option<&Value>, key: &str, default: bool) -> Result<bool, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => match scalar(v).to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid(key, format!("{v} is not true or false"))),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn load(
        files: &[(&str, &str)],
        env: &[(&str, &str)],
        overrides: &[(&str, &str)],
    ) -> Result<RuntimeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        RuntimeConfig::load(&Sources {
            working_dir: dir.path().to_owned(),
            config_file: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            overrides: overrides
                .iter()
                .map(|(k, v)| ((*k).into(), Value::String((*v).into())))
                .collect(),
        })
    }

    #[test]
    fn no_file_at_all_runs_the_development_tenant_on_the_original_ports() {
        let c = load(&[], &[], &[]).unwrap();
        assert_eq!(c.tenants, vec![DEVELOPMENT_TENANT]);
        assert_eq!(c.endpoints.private.port, 50053);
        assert_eq!(c.endpoints.public.port, 50052);
        assert_eq!(c.endpoints.management.port, 51052);
        assert_eq!(c.endpoints.management_web.port, 51152);
        assert_eq!(c.endpoints.web.port, 8001);
        assert_eq!(c.endpoints.metrics.port, 9700);
        assert_eq!(c.endpoints.legacy.port, 50055);
        assert_eq!(c.endpoints.private_contract, Contract::Current);
        assert!(c.management_web_origins.is_empty());
        assert_eq!(c.connections, ConnectionLimits::default());
        assert_eq!(c.platform.environment, "Development");
        assert_eq!(c.platform.microservice_id, NOT_SET_MICROSERVICE);
        assert!(c.data_dir.ends_with("data"));
    }

    #[test]
    fn grpc_web_origins_as_a_list_or_one_text() {
        let yaml = "endpoints:\n  managementWeb:\n    port: 6152\n    allowedOrigins:\n      - https://studio.example.com\n      - http://localhost:3000\n";
        let c = load(&[(".dolittle/runtime.yml", yaml)], &[], &[]).unwrap();
        assert_eq!(c.endpoints.management_web.port, 6152);
        assert_eq!(
            c.management_web_origins,
            ["https://studio.example.com", "http://localhost:3000"]
        );
        let c = load(
            &[],
            &[(
                "DOLITTLE__RUNTIME__ENDPOINTS__MANAGEMENTWEB__ALLOWEDORIGINS",
                "*, https://a.example",
            )],
            &[],
        )
        .unwrap();
        assert_eq!(c.management_web_origins, ["*", "https://a.example"]);
        for bad in [
            "studio.example.com",
            "https://a.example/path",
            "ftp://a.example",
        ] {
            let e = load(&[], &[], &[("endpoints:managementweb:allowedorigins", bad)])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("allowedOrigins") && e.contains(bad),
                "{bad}: {e}"
            );
        }
        let e = load(&[], &[], &[("endpoints:managementweb:port", "51052")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("management"), "{e}");
    }

    #[test]
    fn yaml_then_env_then_flags() {
        let yaml = "platform:\n  microserviceID: 11111111-2222-3333-4444-555555555555\n  environment: Prod\nendpoints:\n  private:\n    port: 6000\n  web:\n    port: 6001\ntenants:\n  5aa8d1e1-1b1f-4f7e-9a42-6c1d3f0b9e10: {}\n  9b9cde37-7f0e-4a1b-8c8b-2a5f1f1d3c44:\n    resources:\n      readModels:\n        database: rm\n";
        let c = load(
            &[(".dolittle/runtime.yml", yaml)],
            &[
                ("DOLITTLE__RUNTIME__ENDPOINTS__PRIVATE__PORT", "7000"),
                ("dolittle__runtime__Endpoints__Web__Port", "7001"),
            ],
            &[("endpoints:web:port", "7002")],
        )
        .unwrap();
        assert_eq!(c.endpoints.private.port, 7000);
        assert_eq!(c.endpoints.web.port, 7002);
        assert_eq!(c.platform.environment, "Prod");
        assert_eq!(c.tenants.len(), 2);
        let yaml = c.to_yaml();
        for line in [
            "MicroserviceID: 11111111-2222-3333-4444-555555555555",
            "readModels:",
            "Database: rm",
            "Port: 7000",
            "5aa8d1e1-1b1f-4f7e-9a42-6c1d3f0b9e10",
        ] {
            assert!(yaml.contains(line), "{line} missing from:\n{yaml}");
        }
    }

    #[test]
    fn appsettings_then_runtime_file_then_env() {
        let appsettings = r#"{"Dolittle": {"Runtime": {"Endpoints": {
            "Management": {"Port": 5152}, "Metrics": {"Port": 1111}, "Web": {"Port": 2222}}}}}"#;
        let runtime = r#"{"endpoints": {"metrics": {"port": 9999}, "web": {"port": 3333}}}"#;
        let c = load(
            &[
                ("appsettings.json", appsettings),
                (".dolittle/runtime.json", runtime),
            ],
            &[("DOLITTLE__RUNTIME__ENDPOINTS__WEB__PORT", "4444")],
            &[],
        )
        .unwrap();
        assert_eq!(c.endpoints.management.port, 5152, "appsettings alone");
        assert_eq!(
            c.endpoints.metrics.port, 9999,
            "the runtime file over appsettings"
        );
        assert_eq!(c.endpoints.web.port, 4444, "the environment over both");
        // A runtime.yaml is read too (any of the three names).
        let c = load(
            &[(
                ".dolittle/runtime.yaml",
                "endpoints:\n  public:\n    port: 6666\n",
            )],
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(c.endpoints.public.port, 6666);
    }

    #[test]
    fn connection_limits_and_the_private_ports_contract() {
        let c = load(
            &[(
                ".dolittle/runtime.yml",
                "endpoints:\n  private:\n    contract: \"5.4\"\nannals:\n  connections:\n    \
                 maxPerPort: 8\n    handshakeTimeout: 2s\n  http2:\n    keepAliveInterval: 1m\n",
            )],
            &[],
            &[("annals:http2:maxConcurrentStreams", "16")],
        )
        .unwrap();
        assert_eq!(c.endpoints.private_contract, Contract::Legacy);
        assert_eq!(c.connections.max_per_port, 8);
        assert_eq!(
            c.connections.handshake_timeout,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(c.connections.max_concurrent_streams, 16);
        assert_eq!(
            c.connections.keep_alive_interval,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(
            c.connections.keep_alive_timeout,
            ConnectionLimits::default().keep_alive_timeout
        );
        let e = load(&[], &[], &[("annals:connections:maxPerPort", "0")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dolittle:runtime:annals:connections:maxPerPort: \"0\" is not a whole number from 1"
        );
        let e = load(&[], &[], &[("annals:connections:handshakeTimeout", "soon")]).unwrap_err();
        assert!(e.to_string().contains("handshakeTimeout"), "{e}");
        let e = load(&[], &[], &[("endpoints:private:contract", "6")]).unwrap_err();
        assert!(e.to_string().contains("endpoints:private:contract"), "{e}");
        let e = load(&[], &[], &[("endpoints:legacy:port", "50053")]).unwrap_err();
        assert!(e.to_string().contains("also the private endpoint"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = load(
            &[],
            &[("DOLITTLE__RUNTIME__ENDPOINTS__PRIVATE__PORT", "http")],
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "dolittle:runtime:endpoints:private:port: \"http\" is not a port number (0-65535)"
        );
        let e = load(
            &[(".dolittle/runtime.json", r#"{"tenants": {"nope": {}}}"#)],
            &[],
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("dolittle:runtime:tenants:nope:"),
            "{e}"
        );
        let e = load(&[], &[], &[("platform:microserviceID", "x")]).unwrap_err();
        assert!(e.to_string().contains("platform:microserviceID"), "{e}");
        let e = load(&[], &[], &[("endpoints:web:port", "50053")]).unwrap_err();
        assert!(e.to_string().contains("also the private endpoint"), "{e}");
        let e = load(&[(".dolittle/runtime.yml", "endpoints: [1")], &[], &[]).unwrap_err();
        assert!(e.to_string().contains("runtime.yml"), "{e}");
        let e = load(&[], &[], &[("annals:engine:segment-bytes-max", "nonsense")]).unwrap_err();
        assert!(
            e.to_string().starts_with("dolittle:runtime:annals:engine"),
            "{e}"
        );
    }

    #[test]
    fn engine_settings_come_through_typed_from_strings() {
        let c = load(
            &[],
            &[
                ("DOLITTLE__RUNTIME__ANNALS__ENGINE__SEAL-ENABLED", "false"),
                (
                    "DOLITTLE__RUNTIME__ANNALS__ENGINE__SEGMENT-BYTES-MAX",
                    "8388608",
                ),
                ("DOLITTLE__RUNTIME__ANNALS__ENGINE__SEAL-ZSTD-LEVEL", "5"),
            ],
            &[],
        )
        .unwrap();
        assert!(!c.engine.log.seal_enabled);
        assert_eq!(c.engine.log.segment_bytes_max.as_u64(), 8 << 20);
        assert_eq!(c.engine.log.seal_zstd_level, 5);
        let e = load(&[], &[], &[("annals:engine:no-such-setting", "1")]).unwrap_err();
        assert!(e.to_string().contains("no-such-setting"), "{e}");
    }

    #[test]
    fn the_fetch_cache_is_a_size_and_zero_turns_it_off() {
        assert_eq!(load(&[], &[], &[]).unwrap().fetch_cache_bytes, 32 << 20);
        let c = load(
            &[],
            &[("DOLITTLE__RUNTIME__ANNALS__FETCHCACHE", "8 MiB")],
            &[],
        )
        .unwrap();
        assert_eq!(c.fetch_cache_bytes, 8 << 20);
        let c = load(&[], &[], &[("annals:fetchCache", "0")]).unwrap();
        assert_eq!(c.fetch_cache_bytes, 0);
        let e = load(&[], &[], &[("annals:fetchCache", "lots")]).unwrap_err();
        assert!(
            e.to_string().contains("annals:fetchCache") && e.to_string().contains("not a size"),
            "{e}"
        );
    }

    #[test]
    fn the_originals_older_files_in_dolittle_are_read_as_it_reads_them() {
        let producer = "11111111-1111-1111-1111-111111111111";
        let other = "77777777-7777-7777-7777-777777777777";
        let files = [
            (
                ".dolittle/runtime.yml",
                "endpoints:\n  private:\n    port: 1111\n  public:\n    port: 2222\n\
                 tenants:\n  88888888-8888-8888-8888-888888888888: {}\n",
            ),
            (
                ".dolittle/endpoints.json",
                r#"{"private": {"port": 50101}}"#,
            ),
            (".dolittle/metrics.json", r#"{"Port": 9800}"#),
            (
                ".dolittle/platform.json",
                r#"{"applicationName": "Shop", "microserviceID": "99999999-9999-9999-9999-999999999999", "environment": "Prod"}"#,
            ),
            (
                ".dolittle/microservices.json",
                r#"{"66666666-6666-6666-6666-666666666666": {"host": "producer.local", "port": 50100}}"#,
            ),
            (
                ".dolittle/resources.json",
                &format!(
                    r#"{{"{producer}": {{"eventStore": {{"servers": ["mongo"], "database": "es"}}}}, "{other}": {{}}}}"#
                ),
            ),
            (
                ".dolittle/event-horizon-consents.yml",
                &format!(
                    "{producer}:\n  - microservice: 22222222-2222-2222-2222-222222222222\n    \
                     tenant: 33333333-3333-3333-3333-333333333333\n    \
                     stream: 44444444-4444-4444-4444-444444444444\n    partition: p\n    \
                     consent: 55555555-5555-5555-5555-555555555555\n"
                ),
            ),
        ];
        let c = load(&files, &[], &[]).unwrap();
        // Key by key over runtime.yml: its public port stays, the private one is replaced.
        assert_eq!(c.endpoints.private.port, 50101);
        assert_eq!(c.endpoints.public.port, 2222);
        assert_eq!(c.endpoints.metrics.port, 9800);
        assert_eq!(c.platform.application_name, "Shop");
        assert_eq!(c.platform.environment, "Prod");
        assert_eq!(
            c.platform.microservice_id,
            Uuid::from_u128(0x9999_9999_9999_9999_9999_9999_9999_9999)
        );
        // resources.json names the tenants (runtime.yml's are replaced, as the original).
        assert_eq!(
            c.tenants,
            vec![
                Uuid::parse_str(producer).unwrap(),
                Uuid::parse_str(other).unwrap()
            ]
        );
        assert_eq!(
            c.horizon.consents,
            vec![Consent {
                producer_tenant: Uuid::parse_str(producer).unwrap(),
                consumer_microservice: Uuid::from_u128(0x2222_2222_2222_2222_2222_2222_2222_2222),
                consumer_tenant: Uuid::from_u128(0x3333_3333_3333_3333_3333_3333_3333_3333),
                stream: Uuid::from_u128(0x4444_4444_4444_4444_4444_4444_4444_4444),
                partition: "p".into(),
                consent: Uuid::from_u128(0x5555_5555_5555_5555_5555_5555_5555_5555),
            }]
        );
        assert_eq!(
            c.horizon
                .producers
                .get(&Uuid::from_u128(0x6666_6666_6666_6666_6666_6666_6666_6666)),
            Some(&ProducerAddress {
                host: "producer.local".into(),
                port: 50100
            })
        );
        // A consent without its microservice names the file.
        let e = load(
            &[(
                ".dolittle/event-horizon-consents.json",
                &format!(r#"{{"{producer}": [{{"tenant": "{other}"}}]}}"#),
            )],
            &[],
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("event-horizon-consents.json")
                && e.to_string().contains("has no microservice"),
            "{e}"
        );
    }

    #[test]
    fn event_horizon_keys_read_as_the_original_writes_them() {
        let producer_tenant = "11111111-1111-1111-1111-111111111111";
        let consumer_ms = "22222222-2222-2222-2222-222222222222";
        let yaml = format!(
            "tenants:\n  {producer_tenant}:\n    eventHorizons:\n      {consumer_ms}:\n        consents:\n\
             \x20         - consumerTenant: 33333333-3333-3333-3333-333333333333\n\
             \x20           stream: 44444444-4444-4444-4444-444444444444\n\
             \x20           partition: 7\n\
             \x20           consent: 55555555-5555-5555-5555-555555555555\n\
             microservices:\n  66666666-6666-6666-6666-666666666666:\n    host: producer.local\n    port: 50100\n\
             eventHorizon:\n  requireConsent: false\n"
        );
        let c = load(&[(".dolittle/runtime.yml", &yaml)], &[], &[]).unwrap();
        assert!(!c.horizon.require_consent);
        assert_eq!(
            c.horizon.consents,
            vec![Consent {
                producer_tenant: Uuid::parse_str(producer_tenant).unwrap(),
                consumer_microservice: Uuid::parse_str(consumer_ms).unwrap(),
                consumer_tenant: Uuid::from_u128(0x3333_3333_3333_3333_3333_3333_3333_3333),
                stream: Uuid::from_u128(0x4444_4444_4444_4444_4444_4444_4444_4444),
                partition: "7".into(),
                consent: Uuid::from_u128(0x5555_5555_5555_5555_5555_5555_5555_5555),
            }]
        );
        let producer = Uuid::from_u128(0x6666_6666_6666_6666_6666_6666_6666_6666);
        assert_eq!(
            c.horizon.producers.get(&producer),
            Some(&ProducerAddress {
                host: "producer.local".into(),
                port: 50100
            })
        );
        // The producer tenant is configured by its consents alone.
        assert!(c
            .tenants
            .contains(&Uuid::parse_str(producer_tenant).unwrap()));
        // Defaults: consent required, no consents, no producers.
        let d = load(&[], &[], &[]).unwrap();
        assert!(d.horizon.require_consent && d.horizon.consents.is_empty());
        // A consent without its consent id names the key.
        let broken = format!(
            "tenants:\n  {producer_tenant}:\n    eventHorizons:\n      {consumer_ms}:\n        consents:\n\
             \x20         - consumerTenant: 33333333-3333-3333-3333-333333333333\n\
             \x20           stream: 44444444-4444-4444-4444-444444444444\n\
             \x20           partition: a\n"
        );
        let e = load(&[(".dolittle/runtime.yml", &broken)], &[], &[]).unwrap_err();
        assert!(e.to_string().contains("consents:0:consent"), "{e}");
        // So does a producer without a host.
        let e = load(
            &[],
            &[(
                "DOLITTLE__RUNTIME__MICROSERVICES__66666666-6666-6666-6666-666666666666__PORT",
                "1",
            )],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains(":host"), "{e}");
    }
}
