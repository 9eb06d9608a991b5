//! The boundary between the wire and the domain: every request is turned into engine types
//! (and checked) here on receipt, and every answer built here, so services hold no encoding
//! rules of their own.

pub(crate) mod convert;
pub(crate) mod failure;
pub(crate) mod ids;
