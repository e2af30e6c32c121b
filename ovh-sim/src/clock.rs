//! Time as the API writes it: Unix seconds now, and the `datetime` and `date` formats.

use std::time::SystemTime;

/// Unix seconds now.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// An API `datetime`: `2024-06-01T12:00:00+00:00`.
pub(crate) fn iso_datetime(unix: u64) -> String {
    let seconds = i64::try_from(unix).unwrap_or(0);
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// An API `date`: `2024-06-01`.
pub(crate) fn iso_date(unix: u64) -> String {
    let seconds = i64::try_from(unix).unwrap_or(0);
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso_datetime(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso_date(86_400), "1970-01-02");
    }
}
