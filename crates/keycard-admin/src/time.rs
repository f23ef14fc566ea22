//! ISO-8601 times for the Auth0 API (a tiny civil-calendar conversion instead of a date crate).

/// `unix` seconds as `YYYY-MM-DDTHH:MM:SS.000Z` (UTC), the format Auth0 uses.
pub(crate) fn iso8601(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = keycard_core::civil::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::iso8601;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_709_287_200), "2024-03-01T10:00:00.000Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(4_102_444_799), "2099-12-31T23:59:59.000Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.000Z");
    }
}
