//! The event horizon's failure ids, those of Dolittle Runtime 9, so a head or a runtime on the
//! other end that branches on them behaves the same against annals.

use annals_contract::api::failure::Failure;
use uuid::Uuid;

/// Producer: the consumer has no consent for what it asked.
pub(crate) const MISSING_CONSENT: Uuid = Uuid::from_u128(0xbe1b_a4e6_81e3_49c4_bec2_6c7e_262b_fb77);
/// Producer: the producer tenant asked for is not one of this runtime's.
pub(crate) const MISSING_PRODUCER_TENANT: Uuid =
    Uuid::from_u128(0x733d_0c4f_fc25_4b60_acdf_cac5_ee66_1f23);
/// Producer: the subscription request lacks what it needs.
pub(crate) use annals_contract::api::event_horizon::MISSING_SUBSCRIPTION_ARGUMENTS;
/// Producer: the same consumer already holds this subscription.
pub(crate) const SUBSCRIPTION_ALREADY_ACTIVE: Uuid =
    Uuid::from_u128(0x8ba0_c1a1_3a42_444b_9206_7090_3392_de17);
/// Consumer: no address is configured for the producer microservice.
pub(crate) const NO_MICROSERVICE_CONFIGURATION: Uuid =
    Uuid::from_u128(0x9b74_482a_8eaa_47ab_ac1c_53d7_04e4_e77d);
/// Consumer: the producer could not be reached.
pub(crate) const COULD_NOT_CONNECT: Uuid =
    Uuid::from_u128(0x2e6b_926a_a213_4175_a597_df64_aee4_a497);
/// Consumer: the subscription was cancelled (the runtime is stopping).
pub(crate) const SUBSCRIPTION_CANCELLED: Uuid =
    Uuid::from_u128(0x2ed2_11ce_7f9b_4a9f_ae9d_973b_fe8a_af2b);
/// Consumer: a received event could not be handled.
pub(crate) const ERROR_HANDLING_EVENT: Uuid =
    Uuid::from_u128(0xaf3a_c513_0411_4e3e_adcf_581e_f022_7e67);

/// No address is configured for `producer` (the original's words).
pub(crate) fn no_producer_address(producer: Uuid) -> Failure {
    failure(
        NO_MICROSERVICE_CONFIGURATION,
        format!("No microservice configuration for producer microservice {producer}"),
    )
}

/// A failure with one of the ids above.
pub(crate) fn failure(id: Uuid, reason: impl Into<String>) -> Failure {
    Failure::new(id, reason)
}
