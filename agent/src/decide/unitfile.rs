//! Reading `Environment=` assignments out of a deployed systemd unit (ours or the old script's).

use std::collections::BTreeMap;

/// `KEY → value` of every `Environment=` line in the `[Service]` section, last assignment winning
/// as in systemd. Quoted words (`"A=b c"`, `'A=b'`) are unquoted; `EnvironmentFile=` is not read.
pub fn service_environment(unit_text: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut in_service = false;
    for raw in unit_text.lines() {
        let line = raw.trim();
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "Environment" {
            continue;
        }
        if value.trim().is_empty() {
            env.clear(); // `Environment=` resets the list
            continue;
        }
        // systemd ignores an assignment line it cannot unquote; so do we.
        let Some(words) = split_words(value) else {
            continue;
        };
        for word in words {
            if let Some((k, v)) = word.split_once('=') {
                env.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    env
}

/// Split on whitespace, honouring double and single quotes and backslash escapes inside them;
/// `None` when a quote is not closed (systemd logs "Invalid environment assignment" and ignores it).
fn split_words(value: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), '\\') => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            (_, c) => {
                current.push(c);
                started = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if started {
        words.push(current);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_old_script_and_quoted_forms() {
        let unit = "[Unit]\nEnvironment=NOT_SERVICE=1\n[Service]\nEnvironment=HOME=/var/lib/agentkeys\n\
                    Environment=\"BROKER_OIDC_ISSUER=https://broker-test-2.litentry.org\" ACCOUNT_ID=429071895007\n\
                    # Environment=BROKER_OIDC_ISSUER=https://broker.litentry.org\n\
                    Environment='A=b c'\nExecStart=/usr/local/bin/x\n[Install]\nEnvironment=X=1\n";
        let env = service_environment(unit);
        assert_eq!(env.get("BROKER_OIDC_ISSUER").map(String::as_str), Some("https://broker-test-2.litentry.org"));
        assert_eq!(env.get("ACCOUNT_ID").map(String::as_str), Some("429071895007"));
        assert_eq!(env.get("A").map(String::as_str), Some("b c"));
        assert!(!env.contains_key("NOT_SERVICE") && !env.contains_key("X"));
    }

    #[test]
    fn an_unterminated_quote_voids_the_line_as_in_systemd() {
        // Found by the deployed_unit fuzz target: the quote was dropped and the issuer accepted.
        let env = service_environment(
            "[Service]\nEnvironment=BROKER_OIDC_ISSUER=https://'broker.litentry.org\nEnvironment=A=1\n",
        );
        assert!(!env.contains_key("BROKER_OIDC_ISSUER"), "{env:?}");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
    }

    #[test]
    fn last_assignment_wins_and_empty_resets() {
        let env = service_environment("[Service]\nEnvironment=A=1\nEnvironment=A=2\n");
        assert_eq!(env.get("A").map(String::as_str), Some("2"));
        let env = service_environment("[Service]\nEnvironment=A=1\nEnvironment=\nEnvironment=B=2\n");
        assert!(!env.contains_key("A") && env.contains_key("B"));
    }
}
