//! The operator env-file format of the old tooling (`KEY=VALUE`, quotes, `$VAR`, `${VAR}`,
//! `${VAR#*.}`), parsed — never executed. Anything a shell would run is an error naming the line.

use std::collections::BTreeMap;

use crate::decide::error::{InvalidInput, Source};

/// Largest value one assignment may expand to. References can double a value per line
/// (`A=$A$A`), so expansion is bounded where it happens, not after.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Largest env file read, and largest sum of its expanded values.
pub(crate) const MAX_FILE_BYTES: usize = 1024 * 1024;

/// One assignment: its value after expansion and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: String,
    pub line: usize,
}

/// The parsed file: the last assignment of each key wins, as in the shell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    pub file: String,
    pub entries: BTreeMap<String, Entry>,
}

impl EnvFile {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The `Source` naming this key for error messages.
    pub fn source(&self, key: &str) -> Source {
        let line = self.entries.get(key).map_or(0, |e| e.line);
        Source::EnvFile { file: self.file.clone(), line, key: key.to_owned() }
    }
}

/// Parse `text` (the contents of `file`).
pub fn parse(file: &str, text: &str) -> Result<EnvFile, InvalidInput> {
    let mut out = EnvFile { file: file.to_owned(), entries: BTreeMap::new() };
    if text.len() > MAX_FILE_BYTES {
        let source = Source::EnvFile { file: file.to_owned(), line: 0, key: "-".into() };
        return Err(InvalidInput::new(
            source,
            format!("the file is {} bytes; an env file may hold at most {MAX_FILE_BYTES}", text.len()),
        ));
    }
    let mut expanded = 0_usize;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let err = |key: &str, reason: String| {
            InvalidInput::new(Source::EnvFile { file: file.to_owned(), line: line_no, key: key.to_owned() }, reason)
        };
        let line = raw.trim_start_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, |l| l.trim_start_matches(' '));
        let Some((key, rest)) = line.split_once('=') else {
            return Err(err("-", "expected KEY=VALUE (a bare command would be executed by a shell; refused)".into()));
        };
        if !is_name(key) {
            return Err(err(
                key,
                format!("{key:?} is not a variable name (letters, digits, _; not starting with a digit)"),
            ));
        }
        let value = expand_value(rest, &out.entries)
            .and_then(|value| if value.len() > MAX_VALUE_BYTES { Err(too_long()) } else { Ok(value) })
            .map_err(|reason| err(key, reason))?;
        expanded += value.len();
        if expanded > MAX_FILE_BYTES {
            return Err(err(
                key,
                format!(
                    "the values expand to more than {MAX_FILE_BYTES} bytes in all; write values out, not references"
                ),
            ));
        }
        out.entries.insert(key.to_owned(), Entry { value, line: line_no });
    }
    Ok(out)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expand one right-hand side: unquoted words, '…', "…" and the allowed references.
fn expand_value(rest: &str, known: &BTreeMap<String, Entry>) -> Result<String, String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\'' => {
                let end = chars[i + 1..].iter().position(|&c| c == '\'').ok_or("unterminated single quote")?;
                out.extend(&chars[i + 1..i + 1 + end]);
                i += end + 2;
            }
            '"' => i = expand_double_quoted(&chars, i + 1, known, &mut out)?,
            '$' => i = expand_reference(&chars, i, known, &mut out)?,
            ' ' | '\t' => {
                let tail: String = chars[i..].iter().collect();
                let tail = tail.trim_start();
                if tail.is_empty() || tail.starts_with('#') {
                    return Ok(out);
                }
                return Err(format!(
                    "unquoted whitespace followed by {tail:?}: a shell would run that as a command; quote the value"
                ));
            }
            '`' => {
                return Err("backtick command substitution is not allowed (the file is parsed, never executed)".into());
            }
            c @ (';' | '&' | '|' | '<' | '>' | '(' | ')' | '\\' | '*' | '?' | '[' | '{' | '}' | '!') => {
                return Err(format!("unquoted {c:?} is shell syntax; quote the value if it is meant literally"));
            }
            c if c.is_control() => return Err(format!("control character {c:?} in value")),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Inside "…": references expand, `\"`, `\\`, `\$` and `` \` `` escape, backticks are refused.
fn expand_double_quoted(
    chars: &[char],
    mut i: usize,
    known: &BTreeMap<String, Entry>,
    out: &mut String,
) -> Result<usize, String> {
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok(i + 1),
            '\\' => match chars.get(i + 1) {
                Some(&c @ ('"' | '\\' | '$' | '`')) => {
                    out.push(c);
                    i += 2;
                }
                _ => {
                    out.push('\\');
                    i += 1;
                }
            },
            '$' => i = expand_reference(chars, i, known, out)?,
            '`' => {
                return Err("backtick command substitution is not allowed (the file is parsed, never executed)".into());
            }
            c if c.is_control() => return Err(format!("control character {c:?} in value")),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err("unterminated double quote".into())
}

/// `$NAME`, `${NAME}` or `${NAME#*.}` at `chars[i] == '$'`; anything else is refused.
fn expand_reference(
    chars: &[char],
    i: usize,
    known: &BTreeMap<String, Entry>,
    out: &mut String,
) -> Result<usize, String> {
    let lookup = |name: &str| {
        known.get(name).map(|e| e.value.clone()).ok_or_else(|| {
            format!("${name} refers to a key not set earlier in this file (environment variables are not read)")
        })
    };
    match chars.get(i + 1) {
        Some('(') => Err("$( ) command substitution is not allowed (the file is parsed, never executed)".into()),
        Some('{') => {
            let close = chars[i + 2..].iter().position(|&c| c == '}').ok_or("unterminated ${ reference")?;
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let value = match inner.split_once('#') {
                None if is_name(&inner) => lookup(&inner)?,
                Some((name, "*.")) if is_name(name) => {
                    let v = lookup(name)?;
                    v.split_once('.').map_or(v.clone(), |(_, after)| after.to_owned())
                }
                _ => {
                    return Err(format!(
                        "${{{inner}}} is not supported: only $VAR, ${{VAR}} and ${{VAR#*.}} are expanded"
                    ));
                }
            };
            push_bounded(out, &value)?;
            Ok(i + 3 + close)
        }
        Some(&c) if c.is_ascii_alphabetic() || c == '_' => {
            let len = chars[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
            let name: String = chars[i + 1..i + 1 + len].iter().collect();
            push_bounded(out, &lookup(&name)?)?;
            Ok(i + 1 + len)
        }
        other => Err(format!(
            "${} is not a supported reference: only $VAR, ${{VAR}} and ${{VAR#*.}} are expanded",
            other.map(|c| c.to_string()).unwrap_or_default()
        )),
    }
}

/// Append an expanded reference unless the value would outgrow `MAX_VALUE_BYTES`, so expanding
/// never holds more than the bound plus one line. (Literal text is checked once the value is whole.)
fn push_bounded(out: &mut String, value: &str) -> Result<(), String> {
    if out.len() + value.len() > MAX_VALUE_BYTES {
        return Err(too_long());
    }
    out.push_str(value);
    Ok(())
}

fn too_long() -> String {
    format!("the value expands to more than {MAX_VALUE_BYTES} bytes (references repeated); write it out or shorten it")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, key: &str) -> String {
        parse("ops.env", text).expect("parses").get(key).expect("key").value.clone()
    }

    #[test]
    fn parses_the_operator_format() {
        let text = "# operator workstation\nACCOUNT_ID=429071895007\nZONE=litentry.org\n\
                    export BROKER_HOST=test-broker.${ZONE}\nMAIL_DOMAIN=\"bots-test.$ZONE\"\n\
                    PARENT='lit$eral'\nSTRIPPED=${BROKER_HOST#*.}\nVAULT_BUCKET=agentkeys-vault-test-${ACCOUNT_ID} # trailing\n\
                    EMPTY=\nQ=\"a \\\"b\\\"\"\n";
        assert_eq!(value(text, "BROKER_HOST"), "test-broker.litentry.org");
        assert_eq!(value(text, "MAIL_DOMAIN"), "bots-test.litentry.org");
        assert_eq!(value(text, "PARENT"), "lit$eral");
        assert_eq!(value(text, "STRIPPED"), "litentry.org");
        assert_eq!(value(text, "VAULT_BUCKET"), "agentkeys-vault-test-429071895007");
        assert_eq!(value(text, "EMPTY"), "");
        assert_eq!(value(text, "Q"), "a \"b\"");
        assert_eq!(parse("f", text).expect("parses").get("ZONE").map(|e| e.line), Some(3));
    }

    #[test]
    fn refuses_everything_a_shell_would_execute() {
        for (text, fragment) in [
            ("A=$(touch /tmp/x)", "command substitution"),
            ("A=\"$(id)\"", "command substitution"),
            ("A=`id`", "backtick"),
            ("A=\"`id`\"", "backtick"),
            ("A=b; rm -rf /", "shell syntax"),
            ("A=b c", "run that as a command"),
            ("A='unterminated", "unterminated single quote"),
            ("A=\"unterminated", "unterminated double quote"),
            ("A=${B}", "not set earlier"),
            ("A=$HOME", "not set earlier"),
            ("B=x\nA=${B:-y}", "not supported"),
            ("B=x\nA=${B%.*}", "not supported"),
            ("A=$", "not a supported reference"),
            ("rm -rf /", "expected KEY=VALUE"),
            ("1A=x", "not a variable name"),
            ("A=x|y", "shell syntax"),
            ("A=x\u{7}", "control character"),
        ] {
            let err = parse("ops.env", text).expect_err(text).to_string();
            assert!(err.contains(fragment), "{text:?}: {err}");
            assert!(err.contains("ops.env:"), "{text:?} names the file and line: {err}");
        }
    }

    #[test]
    fn expansion_is_bounded() {
        // Each line doubles the value: 2^30 bytes unbounded. The fuzzer found this (out of memory).
        let mut text = String::from("A=xxxxxxxx\n");
        text.push_str(&"A=$A$A\n".repeat(30));
        let err = parse("ops.env", &text).expect_err("refused").to_string();
        assert!(err.contains(&format!("more than {MAX_VALUE_BYTES} bytes")), "{err}");
        assert!(err.contains("ops.env:13: A"), "names the first line past the bound: {err}");
        // Right at the bound is fine: 8 bytes doubled 11 times is 16384.
        let mut text = String::from("A=xxxxxxxx\n");
        text.push_str(&"A=$A$A\n".repeat(11));
        assert_eq!(value(&text, "A").len(), MAX_VALUE_BYTES);
        // Literal text after a reference counts too (found by the fuzzer after the first fix).
        for tail in ["A=$A.A", "A=\"$A.A\"", "A=$A'.'"] {
            let err = parse("ops.env", &format!("{text}{tail}\n")).expect_err(tail).to_string();
            assert!(err.contains("ops.env:13: A"), "{tail}: {err}");
        }
        let long_literal = format!("A={}\n", "x".repeat(MAX_VALUE_BYTES + 1));
        assert!(parse("ops.env", &long_literal).is_err(), "a literal longer than the bound");
        // Many values each under the bound still add up to a limit for the file.
        let mut text = format!("A={}\n", "x".repeat(MAX_VALUE_BYTES));
        text.push_str(&"B=$A\n".repeat(MAX_FILE_BYTES / MAX_VALUE_BYTES));
        let err = parse("ops.env", &text).expect_err("refused").to_string();
        assert!(err.contains("in all"), "{err}");
        let big = "#".repeat(MAX_FILE_BYTES + 1);
        let err = parse("ops.env", &big).expect_err("refused").to_string();
        assert!(err.contains("at most"), "{err}");
    }

    #[test]
    fn error_names_the_line() {
        let err = parse("ops.env", "A=1\n\n# c\nB=$(id)\n").expect_err("refused").to_string();
        assert!(err.contains("ops.env:4: B"), "{err}");
    }
}
