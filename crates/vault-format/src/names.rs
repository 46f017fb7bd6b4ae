//! The rules for secret and key names: what every stored name satisfies ([`check_name`]) and the
//! stricter rule for a name about to be written ([`check_new_name`]).

use crate::payload::MAX_NAME_LEN;

/// Checks a secret or key name against the policy: 1 to 256 bytes of UTF-8, no control
/// characters, no leading or trailing whitespace.
///
/// # Errors
/// A reason the name is refused.
pub fn check_name(name: &str) -> core::result::Result<(), String> {
    if name.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a name is at most {MAX_NAME_LEN} bytes, this one is {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a name cannot contain control characters".into());
    }
    if name.trim() != name {
        return Err("a name cannot start or end with whitespace".into());
    }
    Ok(())
}

/// Checks a name about to be written: [`check_name`], and also no Unicode format characters
/// (category Cf: bidi overrides and isolates, zero-width spaces and joiners, the BOM), line or
/// paragraph separators, or whitespace other than the ASCII space, all of which make a name look
/// like another in a listing. Only new names are held to this; names already stored are read
/// under [`check_name`] so an older vault stays readable.
///
/// # Errors
/// A reason the name is refused, naming the offending code point.
pub fn check_new_name(name: &str) -> core::result::Result<(), String> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    check_name(name)?;
    for c in name.chars() {
        let refused = match c.general_category() {
            GeneralCategory::Format => Some("a format character (bidi control or zero-width)"),
            GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
                Some("a line or paragraph separator")
            }
            GeneralCategory::SpaceSeparator if c != ' ' => Some("whitespace other than a space"),
            _ => None,
        };
        if let Some(what) = refused {
            return Err(format!(
                "a name cannot contain {what}; this one has U+{:04X}",
                u32::from(c)
            ));
        }
    }
    Ok(())
}
