//! The Handshake rpc's checks: the head's fields and the compatibility of its contracts, as
//! the original answers them (its failure ids and reasons).

use crate::api::failure::{id, Failure};
use crate::proto::dolittle::runtime::handshake::HandshakeRequest;
use crate::proto::dolittle::versioning::Version;

/// The contracts this runtime speaks.
pub const CONTRACTS_VERSION: (i32, i32, i32) = (7, 8, 1);

/// A version on the wire (build 0).
pub fn version(major: i32, minor: i32, patch: i32, pre_release: &str) -> Version {
    Version {
        major,
        minor,
        patch,
        build: 0,
        pre_release_string: pre_release.to_owned(),
    }
}

/// Major.Minor.Patch.Build[-PreRelease], as the original prints versions.
pub fn version_text(v: &Version) -> String {
    let mut text = format!("{}.{}.{}.{}", v.major, v.minor, v.patch, v.build);
    if !v.pre_release_string.is_empty() {
        text.push('-');
        text.push_str(&v.pre_release_string);
    }
    text
}

/// Checks a handshake's fields (in the original's order), then the contracts' compatibility.
pub fn check_handshake(request: &HandshakeRequest) -> Result<(), Failure> {
    let missing = |field: &str| {
        Failure::new(
            id::HANDSHAKE_MISSING_INFORMATION,
            format!("The received handshake is missing the field {field}"),
        )
    };
    if request.sdk_identifier.trim().is_empty() {
        return Err(missing("SdkIdentifier"));
    }
    if request.head_version.is_none() {
        return Err(missing("HeadVersion"));
    }
    if request.sdk_version.is_none() {
        return Err(missing("SdkVersion"));
    }
    let Some(head) = &request.contracts_version else {
        return Err(missing("ContractsVersion"));
    };
    if request.time_spent.is_none() {
        return Err(missing("TimeSpent"));
    }
    let (major, minor, patch) = CONTRACTS_VERSION;
    if head.major > major || (head.major == major && head.minor > minor) {
        return Err(Failure::new(
            id::HANDSHAKE_RUNTIME_MUST_BE_UPDATED,
            format!(
                "This version of the Runtime is too old to be used with the SDK you are currently \
                 using. Please upgrade your Runtime to a version that supports Contracts {}.",
                version_text(head)
            ),
        ));
    }
    if head.major < major {
        return Err(Failure::new(
            id::HANDSHAKE_SDK_MUST_BE_UPDATED,
            format!(
                "The version of your currently used SDK is too old to be used with this version \
                 of the Runtime. Please upgrade your SDK to a version that supports Contracts {}.",
                version_text(&version(major, minor, patch, ""))
            ),
        ));
    }
    Ok(())
}
