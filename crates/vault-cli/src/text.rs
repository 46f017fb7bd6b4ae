//! Formatting numbers and times for people.

/// Argon2id memory for people: whole MiB when it is, KiB otherwise (a test vault's 32 KiB is not
/// "0 MiB").
pub(crate) fn kib_text(kib: u32) -> String {
    if kib.is_multiple_of(1024) {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

/// UTC time as RFC 3339 to the second, `YYYY-MM-DDTHH:MM:SSZ`; a time outside the calendar's
/// range (a damaged or hostile timestamp) prints as its raw milliseconds.
pub(crate) fn format_time(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms after 1970-01-01T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_format_as_rfc3339_seconds() {
        assert_eq!(super::format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            super::format_time(1_795_457_178_999),
            "2026-11-23T18:06:18Z"
        );
        assert_eq!(super::format_time(-1), "1969-12-31T23:59:59Z");
        assert!(super::format_time(i64::MAX).contains("ms after"));
    }
}
