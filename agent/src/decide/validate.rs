//! Validation of every value that can end up in a unit, env file or vhost (spec §2).
//!
//! A value that passes here can be written into a template verbatim: templates never escape.

use crate::decide::error::{InvalidInput, Source};

/// Longest DNS name we accept (RFC 1035 without the trailing dot).
const MAX_HOSTNAME: usize = 253;
const MAX_LABEL: usize = 63;

fn invalid(source: &Source, reason: impl Into<String>) -> InvalidInput {
    InvalidInput::new(source.clone(), reason)
}

/// Describe a value for an error message without echoing control characters.
pub(crate) fn shown(value: &str) -> String {
    format!("{value:?}")
}

/// One DNS label per RFC 1123: 1–63 of `a-z0-9-`, not starting or ending with `-`. Lowercase only.
pub(crate) fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty DNS label (two dots in a row, or a leading/trailing dot)".into());
    }
    if label.len() > MAX_LABEL {
        return Err(format!("DNS label {} is {} characters; the limit is {MAX_LABEL}", shown(label), label.len()));
    }
    if let Some(bad) = label.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        let hint = if bad.is_ascii_uppercase() { " (use lowercase)" } else { "" };
        return Err(format!("DNS label {} contains {bad:?}; only a-z, 0-9 and '-' are allowed{hint}", shown(label)));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("DNS label {} starts or ends with '-'", shown(label)));
    }
    Ok(())
}

/// A hostname per RFC 1123 with at least `min_labels` labels and a non-numeric last label.
pub(crate) fn check_hostname(name: &str, min_labels: usize) -> Result<(), String> {
    if name.len() > MAX_HOSTNAME {
        return Err(format!("hostname is {} characters; the limit is {MAX_HOSTNAME}", name.len()));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        check_label(label)?;
    }
    if labels.len() < min_labels {
        return Err(format!("{} needs at least {min_labels} labels (e.g. example.org)", shown(name)));
    }
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err(format!("{} ends in a numeric label; an IP address is not a DNS name", shown(name)));
    }
    Ok(())
}

/// A DNS zone such as `litentry.org` or `agents.example.co.uk`.
pub fn zone(source: &Source, value: &str) -> Result<String, InvalidInput> {
    check_hostname(value, 2).map_err(|r| invalid(source, r))?;
    Ok(value.to_owned())
}

/// An AWS account id: exactly 12 digits.
pub(crate) fn account_id(source: &Source, value: &str) -> Result<String, InvalidInput> {
    if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value.to_owned())
    } else {
        Err(invalid(source, format!("{} is not an AWS account id (exactly 12 digits)", shown(value))))
    }
}

/// An AWS region such as `us-east-1` or `us-gov-west-1`.
pub(crate) fn region(source: &Source, value: &str) -> Result<String, InvalidInput> {
    let parts: Vec<&str> = value.split('-').collect();
    let ok = parts.len() >= 3
        && parts.len() <= 4
        && value.len() <= 32
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts.last().is_some_and(|n| !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(source, format!("{} is not an AWS region (e.g. us-east-1)", shown(value))))
    }
}

/// A contract address: `0x` followed by 40 hex digits. Empty means "not deployed".
pub fn address(source: &Source, value: &str) -> Result<String, InvalidInput> {
    let ok = value.len() == 42 && value.starts_with("0x") && value[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(source, format!("{} is not a contract address (0x followed by 40 hex digits)", shown(value))))
    }
}

/// An S3 bucket name (3–63 of `a-z0-9.-`, starting and ending alphanumeric).
pub fn bucket(source: &Source, value: &str) -> Result<String, InvalidInput> {
    let ok = (3..=63).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && value.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        && !value.contains("..");
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(source, format!("{} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')", shown(value))))
    }
}

/// An email address whose domain is a valid hostname and whose local part is plain.
pub fn email(source: &Source, value: &str) -> Result<String, InvalidInput> {
    let (local, domain) =
        value.split_once('@').ok_or_else(|| invalid(source, format!("{} is not an email address", shown(value))))?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if !local_ok {
        return Err(invalid(source, format!("{} has an unsupported local part", shown(value))));
    }
    check_hostname(domain, 2).map_err(|r| invalid(source, format!("domain of {}: {r}", shown(value))))?;
    Ok(value.to_owned())
}

/// An http(s) URL without credentials, whitespace or characters a unit file would interpret.
pub(crate) fn http_url(source: &Source, value: &str) -> Result<String, InvalidInput> {
    safe_value(source, value)?;
    let parsed = url::Url::parse(value).map_err(|e| invalid(source, format!("{} is not a URL: {e}", shown(value))))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(source, format!("{} must be an http or https URL", shown(value))));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(source, "URLs with embedded credentials are refused (they would be logged)"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(source, format!("{} has no host", shown(value))));
    }
    Ok(value.to_owned())
}

/// Any value written into a unit or env file: printable ASCII without whitespace, quotes,
/// backslashes, `$`, `%`, backticks, `;` or braces, so neither systemd nor a shell nor nginx
/// gives it a meaning.
pub(crate) fn safe_value(source: &Source, value: &str) -> Result<String, InvalidInput> {
    const FORBIDDEN: &[u8] = b" \t\"'\\$%`;{}";
    if let Some(c) = value.chars().find(|c| !c.is_ascii() || c.is_ascii_control() || FORBIDDEN.contains(&(*c as u8))) {
        return Err(invalid(
            source,
            format!(
                "value contains {c:?}, which is not allowed here (no whitespace, control or non-ASCII characters, quotes, \\, $, %, `, ;, {{ or }})"
            ),
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag() -> Source {
        Source::Flag("--x".into())
    }

    #[test]
    fn hostnames_follow_rfc_1123() {
        for good in ["litentry.org", "agents.example.co.uk", "a-b.c0.io", "x1.org"] {
            assert!(check_hostname(good, 2).is_ok(), "{good}");
        }
        let long_label = "a".repeat(64);
        let long_name = format!("{}.org", ["abcdefghi"; 26].join("."));
        for bad in [
            "org",
            "Litentry.org",
            "-a.org",
            "a-.org",
            "a..org",
            ".a.org",
            "a.org.",
            "a_b.org",
            "a b.org",
            "a;b.org",
            "a{b.org",
            "a\nb.org",
            "bücher.org",
            "1.2.3.4",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(check_hostname(bad, 2).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn account_region_address_bucket() {
        assert!(account_id(&flag(), "429071895007").is_ok());
        for bad in ["42907189500", "4290718950071", "42907189500a", " 429071895007", ""] {
            assert!(account_id(&flag(), bad).is_err(), "{bad:?}");
        }
        for good in ["us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-10"] {
            assert!(region(&flag(), good).is_ok(), "{good}");
        }
        for bad in ["us-east", "US-EAST-1", "us-east-1;", "useast1", "us-east-123", "-us-east-1", "us--1"] {
            assert!(region(&flag(), bad).is_err(), "{bad:?}");
        }
        assert!(address(&flag(), "0x5FbDB2315678afecb367f032d93F642f64180aa3").is_ok());
        for bad in [
            "5FbDB2315678afecb367f032d93F642f64180aa3",
            "0x5FbDB2315678afecb367f032d93F642f64180aa",
            "0xZZbDB2315678afecb367f032d93F642f64180aa3",
        ] {
            assert!(address(&flag(), bad).is_err(), "{bad:?}");
        }
        assert!(bucket(&flag(), "agentkeys-vault-test-2-429071895007").is_ok());
        for bad in ["ab", "Agentkeys", "a..b", "-ab", "ab-", "a b"] {
            assert!(bucket(&flag(), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_and_safe_values() {
        assert!(http_url(&flag(), "https://rpc.example.org/v1").is_ok());
        assert!(http_url(&flag(), "http://127.0.0.1:8545").is_ok());
        for bad in [
            "ftp://x.org",
            "https://user:pw@x.org",
            "https://x.org/$(id)",
            "https://x.org/a b",
            "not a url",
            "https://x.org/%41",
        ] {
            assert!(http_url(&flag(), bad).is_err(), "{bad:?}");
        }
        for bad in ["a\nb", "a b", "a\"b", "a'b", "a\\b", "a$b", "a%b", "a`b", "a;b", "a{b", "é"] {
            assert!(safe_value(&flag(), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails() {
        assert!(email(&flag(), "noreply-test-2@bots-test-2.litentry.org").is_ok());
        for bad in ["noreply", "@bots.org", "a b@bots.org", "a@bots", "a@Bots.org"] {
            assert!(email(&flag(), bad).is_err(), "{bad:?}");
        }
    }
}
