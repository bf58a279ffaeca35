//! Times as people read them: UTC RFC 3339 and a relative phrase ("in 59 d", "3 h ago"), for
//! `status` and `doctor` (JSON keeps unix seconds and adds the RFC 3339 form).

/// `2027-01-29T12:00:00Z`; an out-of-range time shows as unix seconds.
pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("unix {unix}"))
}

/// How far `t` is from `now`, in the largest unit that keeps the number readable.
pub(crate) fn relative(t: i64, now: i64) -> String {
    let d = t - now;
    let a = d.unsigned_abs();
    let (n, unit) = match a {
        0..60 => return "now".into(),
        60..5_400 => (a / 60, "min"),
        5_400..172_800 => (a / 3_600, "h"),
        _ => (a / 86_400, "d"),
    };
    if d > 0 { format!("in {n} {unit}") } else { format!("{n} {unit} ago") }
}

/// `2027-01-29T12:00:00Z (in 59 d)`.
pub(crate) fn when(t: i64, now: i64) -> String {
    format!("{} ({})", rfc3339(t), relative(t, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_times() {
        assert_eq!(rfc3339(1_801_224_000), "2027-01-29T12:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        let now = 1_800_000_000;
        let table = [
            (now, "now"),
            (now + 59, "now"),
            (now + 60, "in 1 min"),
            (now - 3 * 60, "3 min ago"),
            (now + 5_400, "in 1 h"),
            (now - 3 * 3_600, "3 h ago"),
            (now + 47 * 3_600, "in 47 h"),
            (now + 59 * 86_400, "in 59 d"),
            (now - 2 * 86_400, "2 d ago"),
        ];
        for (t, want) in table {
            assert_eq!(relative(t, now), want, "{}", t - now);
        }
        assert_eq!(when(now + 59 * 86_400, now), format!("{} (in 59 d)", rfc3339(now + 59 * 86_400)));
        assert!(rfc3339(i64::MAX).starts_with("unix "));
    }
}
