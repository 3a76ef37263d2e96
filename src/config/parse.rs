//! The `server.properties` syntax (Java `Properties`: comments, `=` or `:`, line
//! continuations, escapes) and `--override key=value` arguments. No meaning is given to keys
//! here; `broker.rs` does that.

use super::{invalid, ConfigError};

/// Parses one `--override key=value` argument.
pub fn parse_override(arg: &str) -> Result<(String, String), ConfigError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(invalid("--override", arg, "key=value")),
    }
}

pub(super) struct PropertyLine {
    pub(super) line: usize,
    pub(super) key: String,
    pub(super) value: String,
}

/// Java `Properties` syntax, except that a line must separate key and value
/// with `=` or `:`: a bare key is far more likely a mistake than an empty setting.
pub(super) fn parse_properties(text: &str) -> Result<Vec<PropertyLine>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        let start = first.trim_start();
        if start.is_empty() || start.starts_with('#') || start.starts_with('!') {
            continue;
        }
        let mut logical = start.to_string();
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let line = index + 1;
        let (key, value) = split_entry(&logical).ok_or_else(|| ConfigError::Syntax {
            line,
            text: logical.trim().to_string(),
        })?;
        entries.push(PropertyLine { line, key, value });
    }
    Ok(entries)
}

/// An odd number of trailing backslashes continues the line; an even number
/// is escaped backslashes.
fn ends_with_continuation(line: &str) -> bool {
    line.chars()
        .rev()
        .take_while(|&character| character == '\\')
        .count()
        % 2
        == 1
}

fn split_entry(line: &str) -> Option<(String, String)> {
    let mut escaped = false;
    let mut separator = None;
    for (index, character) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if character == '\\' {
            escaped = true;
        } else if matches!(character, '=' | ':') {
            separator = Some(index);
            break;
        }
    }
    let separator = separator?;
    let key = unescape(&line[..separator])?.trim().to_string();
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return None;
    }
    let value = unescape(&line[separator + 1..])?.trim().to_string();
    Some((key, value))
}

fn unescape(raw: &str) -> Option<String> {
    let mut output = String::with_capacity(raw.len());
    let mut characters = raw.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            output.push(character);
            continue;
        }
        match characters.next() {
            None => {}
            Some('t') => output.push('\t'),
            Some('n') => output.push('\n'),
            Some('r') => output.push('\r'),
            Some('f') => output.push('\u{c}'),
            Some('u') => {
                let unit = read_utf16_unit(&mut characters)?;
                let decoded = if (0xD800..0xDC00).contains(&unit) {
                    // Java writes characters outside the BMP as two escaped surrogates.
                    let mut lookahead = characters.clone();
                    if lookahead.next() != Some('\\') || lookahead.next() != Some('u') {
                        return None;
                    }
                    let low = read_utf16_unit(&mut lookahead)?;
                    characters = lookahead;
                    char::decode_utf16([unit, low]).next()?.ok()?
                } else {
                    char::from_u32(u32::from(unit))?
                };
                output.push(decoded);
            }
            Some(other) => output.push(other),
        }
    }
    Some(output)
}

fn read_utf16_unit(characters: &mut std::str::Chars<'_>) -> Option<u16> {
    let mut unit: u16 = 0;
    for _ in 0..4 {
        let digit = characters.next()?.to_digit(16)?;
        unit = unit * 16 + u16::try_from(digit).ok()?;
    }
    Some(unit)
}
