//! What the event horizon is configured with, in the original's terms: consents given by this
//! runtime's tenants to other microservices (producer side), the addresses of the
//! microservices this runtime subscribes to (consumer side), and whether consent is needed at
//! all. The server reads these from the `dolittle:runtime` configuration; this crate only
//! uses them.

use std::collections::BTreeMap;

use uuid::Uuid;

/// The event horizon's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HorizonConfig {
    /// `eventHorizon:requireConsent` (default true): whether a consumer needs a consent to
    /// subscribe. Without it every subscription to a configured tenant is accepted, under the
    /// empty consent id.
    pub require_consent: bool,
    /// Consents this runtime's tenants gave
    /// (`tenants:<producer tenant>:eventHorizons:<consumer microservice>:consents`).
    pub consents: Vec<Consent>,
    /// Where the microservices this runtime subscribes to serve their public port
    /// (`microservices:<id>:host` and `:port`).
    pub producers: BTreeMap<Uuid, ProducerAddress>,
    /// TLS for the connections this runtime makes to producers (`annals:tls:consumer:*`);
    /// none means plaintext, as the original.
    pub consumer_tls: Option<ConsumerTls>,
    /// How many events a producer sends ahead of the consumer's acknowledgements
    /// (`annals:eventHorizon:windowEvents`, default 10 000, minimum 1; 1 is the original's
    /// stop-and-wait).
    pub window_events: usize,
}

impl Default for HorizonConfig {
    fn default() -> Self {
        HorizonConfig {
            require_consent: true,
            consents: Vec::new(),
            producers: BTreeMap::new(),
            consumer_tls: None,
            window_events: 10_000,
        }
    }
}

/// One consent: a producer tenant lets a consumer (microservice and tenant) read one partition
/// of one of its public streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The tenant whose public stream is read.
    pub producer_tenant: Uuid,
    /// The microservice that reads it.
    pub consumer_microservice: Uuid,
    /// The consumer's tenant.
    pub consumer_tenant: Uuid,
    /// The public stream (the public filter's id).
    pub stream: Uuid,
    /// The partition (compared as text).
    pub partition: String,
    /// The consent's id, given back to the consumer.
    pub consent: Uuid,
}

/// Where a producer microservice's public port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerAddress {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// How this runtime reaches producers over TLS: the roots it trusts and, for producers that
/// check client certificates, the certificate it presents. All PEM, read at start-up.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsumerTls {
    /// Certificate authorities a producer's certificate must chain to
    /// (`annals:tls:consumer:certificateAuthority`).
    pub certificate_authority_pem: Vec<u8>,
    /// This runtime's client certificate and its private key (`annals:tls:consumer:certificate`
    /// and `:key`), when producers ask for one.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ConsumerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a private key.
        f.debug_struct("ConsumerTls")
            .field(
                "certificate_authority_bytes",
                &self.certificate_authority_pem.len(),
            )
            .field("identity", &self.identity_pem.is_some())
            .finish()
    }
}
