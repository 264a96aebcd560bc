//! Arguments parsed at the door: ids, page sizes and cursors, each refused as BAD_USER_INPUT
//! naming its field before anything reaches a service.

use async_graphql::ID;

use super::{DEFAULT_FIRST, MAX_FIRST};
use crate::error::GatewayError;

/// Longest `after` cursor accepted; the services' cursors are far shorter.
const MAX_CURSOR_LEN: usize = 512;

/// An id as the services hand them out (a UUID), lower-cased so cache keys agree; anything
/// else is BAD_USER_INPUT naming `field`, and never reaches a URL.
pub(super) fn uuid_id(field: &str, id: &ID) -> Result<String, GatewayError> {
    let s = id.as_str().trim();
    let ok = s.len() == 36
        && s.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() });
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(GatewayError::field(field, format!("`{}` is not a valid id", platform::error::shown(s))))
    }
}

/// `first` of a listing: absent or null (as an unset variable is) means [`DEFAULT_FIRST`].
pub(super) fn page_size(first: Option<i32>) -> Result<i32, GatewayError> {
    let first = first.unwrap_or(DEFAULT_FIRST);
    if (1..=MAX_FIRST).contains(&first) {
        Ok(first)
    } else {
        Err(GatewayError::field("first", format!("must be 1 to {MAX_FIRST}")))
    }
}

/// A cursor this API handed out: base64url, bounded, so it is safe in a query string and a key.
pub(super) fn cursor_arg(after: Option<&str>) -> Result<Option<&str>, GatewayError> {
    match after {
        None => Ok(None),
        Some(a)
            if !a.is_empty()
                && a.len() <= MAX_CURSOR_LEN
                && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(Some(a))
        }
        Some(_) => Err(GatewayError::field("after", "is not a cursor this API returned")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuids_lower_cased() {
        let id = ID::from("0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B");
        assert_eq!(uuid_id("id", &id).ok().as_deref(), Some("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        for bad in ["", "../../admin", "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g"] {
            assert!(uuid_id("id", &ID::from(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_and_page_sizes_are_checked() {
        assert!(cursor_arg(Some("eyJhdCI6IjIwMjYifQ")).is_ok());
        assert!(cursor_arg(Some("a&region=SA")).is_err());
        assert!(cursor_arg(Some("")).is_err());
        assert!(page_size(Some(0)).is_err() && page_size(Some(101)).is_err() && page_size(Some(100)).is_ok());
        assert_eq!(page_size(None).ok(), Some(DEFAULT_FIRST));
    }
}
