//! Input parsed once at the door: handlers turn bodies into these, inner code trusts them.

use std::fmt;

use platform::auth::Role;
use serde::Serialize;
use uuid::Uuid;

/// An email address: trimmed, at most 254 bytes, one `@` with a non-empty local part and a
/// dotted domain, no spaces or control characters. Compared case-insensitively through
/// [`Email::normalized`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("is required".into());
        }
        if s.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        platform::parse::printable(s, false)?;
        if s.chars().any(char::is_whitespace) {
            return Err("must not contain spaces".into());
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err("must look like name@example.com".into());
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err("must look like name@example.com".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness and login compare.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A display name: 1–100 characters after trimming, on one line, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        match s.chars().count() {
            0 => Err("is required".into()),
            n if n > 100 => Err("must be at most 100 characters".into()),
            _ => platform::parse::printable(s, false).map(|()| Self(s.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password: 8–128 bytes, kept as given (no trimming: spaces are characters too), no control
/// characters (no keyboard types them; a NUL is usually a client bug). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.len() {
            n if n < 8 => Err("must be at least 8 bytes".into()),
            n if n > 128 => Err("must be at most 128 bytes".into()),
            _ => platform::parse::printable(raw, false).map(|()| Self(raw.to_owned())),
        }
    }

    /// A password as typed at login: 1–128 bytes. The signup minimum (and the control-character
    /// rule, newer than some accounts) is not applied, so a stricter policy does not lock out
    /// existing users with a 400 instead of checking their password. It is only hashed, never
    /// stored, so a NUL here is harmless.
    pub fn for_login(raw: &str) -> Result<Self, String> {
        match raw.len() {
            0 => Err("is required".into()),
            n if n > 128 => Err("must be at most 128 bytes".into()),
            _ => Ok(Self(raw.to_owned())),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A user's id: a UUID (v7 for users made here, so ids sort by creation). Parsed at the door
/// from gRPC strings; token subjects arrive already typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    /// A new id for a user being created.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id in `raw` (surrounding spaces ignored). The message does not echo the input, so
    /// arbitrary client text is never reflected or logged.
    pub fn parse(raw: &str) -> Result<Self, String> {
        platform::parse::uuid(raw.trim()).map(Self)
    }

    pub fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for UserId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The role chosen at signup: CUSTOMER (default) or ORGANIZER. ADMIN is made only by the
/// `create-admin` command.
pub fn signup_role(raw: Option<&str>) -> Result<Role, String> {
    match raw.map(str::trim) {
        None | Some("") => Ok(Role::Customer),
        Some(s) => match Role::parse(&s.to_ascii_uppercase()) {
            Some(Role::Admin) => Err("ADMIN cannot be chosen at signup".into()),
            Some(role) => Ok(role),
            None => Err("must be CUSTOMER or ORGANIZER".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(Email::parse("  Ann@Example.org ").unwrap().as_str(), "Ann@Example.org");
        assert_eq!(Email::parse("Ann@Example.org").unwrap().normalized(), "ann@example.org");
        for bad in ["", "ann", "ann@", "@x.org", "ann@x", "a b@x.org", "ann@x..org", "ann@.x.org", "ann@x.org."] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@x.org", "a".repeat(65))).is_err());
        // A NUL is named as what it is, not as a space.
        let nul = Email::parse("ann\u{0}@x.org").unwrap_err();
        assert!(nul.contains("control characters") && nul.contains("U+0000"), "{nul}");
        assert_eq!(Email::parse("a b@x.org").unwrap_err(), "must not contain spaces");
    }

    #[test]
    fn names_and_passwords() {
        assert!(UserName::parse("   ").is_err());
        assert_eq!(UserName::parse(" Ann ").unwrap().as_str(), "Ann");
        assert!(UserName::parse(&"é".repeat(100)).is_ok());
        assert!(UserName::parse(&"é".repeat(101)).is_err());
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert_eq!(format!("{:?}", Password::parse("secret-pw").unwrap()), "Password(<redacted>)");
        for bad in ["Ann\u{0}", "Ann\nLee", "\u{1b}[31mAnn"] {
            assert!(UserName::parse(bad).unwrap_err().contains("control characters"), "{bad:?}");
        }
        assert!(Password::parse("secret\u{0}pw").unwrap_err().contains("control characters"));
        assert!(Password::for_login("secret\u{0}pw").is_ok());
    }

    #[test]
    fn user_ids() {
        let id = UserId::generate();
        assert_eq!(UserId::parse(&format!(" {id} ")), Ok(id));
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(id.to_string()));
        for bad in ["", "123", "not-a-uuid", "0190e5c8-0000-7000-8000-00000000000g"] {
            assert_eq!(UserId::parse(bad), Err("must be a UUID".into()), "{bad}");
        }
    }

    #[test]
    fn roles_at_signup() {
        assert_eq!(signup_role(None), Ok(Role::Customer));
        assert_eq!(signup_role(Some("organizer")), Ok(Role::Organizer));
        assert!(signup_role(Some("ADMIN")).is_err());
        assert!(signup_role(Some("BOSS")).is_err());
    }
}
