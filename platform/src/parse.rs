//! Parsers for values every service reads from clients, so each is written and worded once.

use uuid::Uuid;

/// A UUID in any form `uuid` reads. The message does not echo the input, so arbitrary client
/// text is never reflected or logged.
pub fn uuid(raw: &str) -> Result<Uuid, String> {
    Uuid::try_parse(raw).map_err(|_| "must be a UUID".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_uuids_and_never_echoes_the_input() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(super::uuid(&id.to_string()), Ok(id));
        assert_eq!(super::uuid("<script>"), Err("must be a UUID".to_owned()));
    }
}
