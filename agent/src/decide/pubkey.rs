//! The broker's session public key file: a complete PEM public-key block (the broker writes it
//! at start; the executor and `exec-with-pubkey` wait for it).

/// A PEM public key: one BEGIN/END block around base64 lines.
pub fn parse_public_key_pem(text: &str) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return Err("empty".into());
    };
    if !first.starts_with("-----BEGIN ") || !first.ends_with("PUBLIC KEY-----") {
        return Err("no -----BEGIN … PUBLIC KEY----- line".into());
    }
    if *last != first.replacen("BEGIN", "END", 1) {
        return Err("no matching END line (file incomplete?)".into());
    }
    let body = &lines[1..lines.len() - 1];
    if body.is_empty() || !body.iter().all(|l| l.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))) {
        return Err("body is not base64".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_must_be_complete() {
        let good = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n";
        assert!(parse_public_key_pem(good).is_ok());
        assert!(parse_public_key_pem("-----BEGIN PUBLIC KEY-----\nMFkw\n").is_err());
        assert!(parse_public_key_pem("").is_err());
        assert!(parse_public_key_pem("-----BEGIN PRIVATE KEY-----\nMFkw\n-----END PRIVATE KEY-----\n").is_err());
    }
}
