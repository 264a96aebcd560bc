//! Parsers for values every service reads from clients, so each is written and worded once.

use uuid::Uuid;

/// A UUID in any form `uuid` reads. The message does not echo the input, so arbitrary client
/// text is never reflected or logged.
pub fn uuid(raw: &str) -> Result<Uuid, String> {
    Uuid::try_parse(raw).map_err(|_| "must be a UUID".to_owned())
}

/// Refuses control characters (NUL, escape, …) in text a person typed: Postgres cannot store
/// NUL in text at all, and the rest only garble what others see. `line_breaks` allows `\n`,
/// `\r` and `\t` (a description), not in one-line text (a name, an email). The message names
/// the character and its position, never the text.
pub fn printable(raw: &str, line_breaks: bool) -> Result<(), String> {
    let allowed = |c: char| line_breaks && matches!(c, '\n' | '\r' | '\t');
    match raw.chars().enumerate().find(|&(_, c)| c.is_control() && !allowed(c)) {
        None => Ok(()),
        Some((i, c)) => {
            Err(format!("must not contain control characters (found U+{:04X} at character {})", u32::from(c), i + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_refuses_control_characters_and_names_the_first() {
        assert_eq!(super::printable("Ann Lee", false), Ok(()));
        assert_eq!(super::printable("line\nbreak\ttab", true), Ok(()));
        assert_eq!(
            super::printable("ab\u{0}c", true),
            Err("must not contain control characters (found U+0000 at character 3)".to_owned())
        );
        assert!(super::printable("two\nlines", false).is_err());
        assert!(super::printable("esc\u{1b}[31m", true).is_err());
        assert!(super::printable("del\u{7f}", true).is_err());
    }

    #[test]
    fn reads_uuids_and_never_echoes_the_input() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(super::uuid(&id.to_string()), Ok(id));
        assert_eq!(super::uuid("<script>"), Err("must be a UUID".to_owned()));
    }
}
