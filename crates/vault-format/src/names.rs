//! The rules for secret and key names: what every stored name satisfies ([`check_name`]) and the
//! stricter syntax for a name about to be given to a new secret or key ([`check_new_name`]).

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

/// The characters a new name may hold besides ASCII letters and digits; `/` separates its parts.
pub const NAME_PUNCTUATION: &str = "_-.@+/";

/// Checks a name about to be given to a new secret or key: ASCII letters, digits and `_ - . @ +`,
/// in parts separated by `/` (`db/password`, `prod/api-token`, `me@example.com`). No part is
/// empty, `.` or `..`, and the name does not start with `-`.
///
/// Why so narrow: a name is typed in shells, becomes an environment variable in `vault run`, a
/// key in a dotenv export and a path-like label in listings. Spaces, `=`, quotes and `..` parts
/// break one of those; letters from other scripts and invisible characters make one name look
/// like another. Names stored by earlier versions are read under [`check_name`] only, and a
/// secret that already exists may be given new versions whatever its name, so older vaults keep
/// working.
///
/// # Errors
/// A reason the name is refused, naming the first offending character or part.
pub fn check_new_name(name: &str) -> core::result::Result<(), String> {
    check_name(name)?;
    if let Some(c) = name
        .chars()
        .find(|&c| !c.is_ascii_alphanumeric() && !NAME_PUNCTUATION.contains(c))
    {
        let shown = if c == ' ' {
            "a space".to_string()
        } else if c.is_ascii_graphic() {
            format!("{c:?}")
        } else {
            format!("U+{:04X}", u32::from(c))
        };
        return Err(format!(
            "a name may hold only ASCII letters, digits, `_ - . @ +` and `/` between parts; this one has {shown}"
        ));
    }
    if name.starts_with('-') {
        return Err("a name cannot start with `-` (it would read as an option)".into());
    }
    if name.split('/').any(str::is_empty) {
        return Err("a name cannot start or end with `/` or hold `//`".into());
    }
    if name.split('/').any(|part| part == "." || part == "..") {
        return Err("a name cannot have a `.` or `..` part".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_name_syntax() {
        for ok in [
            "a",
            "db/password",
            "prod/api-token_v2",
            "me@example.com",
            "a+b",
            "x/.hidden",
            "v1.2..3",
            "A/B/C",
        ] {
            assert_eq!(check_new_name(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("my key", "a space"),
            ("a=b", "'='"),
            ("../up", "`..` part"),
            ("a/../b", "`..` part"),
            ("a/./b", "`..` part"),
            (".", "`..` part"),
            ("/abs", "`//`"),
            ("end/", "`//`"),
            ("a//b", "`//`"),
            ("-rf", "start with `-`"),
            ("caf\u{e9}", "U+00E9"),
            ("\u{430}pi", "U+0430"),
            ("a\u{200b}b", "U+200B"),
            ("bad!", "'!'"),
            ("it's", "'\\''"),
            ("", "empty"),
            (" lead", "whitespace"),
        ] {
            let err = check_new_name(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn stored_names_are_read_under_the_older_rule() {
        for old in ["my key", "a=b", "../x", "caf\u{e9}"] {
            assert_eq!(check_name(old), Ok(()), "{old}");
            assert!(check_new_name(old).is_err(), "{old}");
        }
        assert!(check_name("a\nb").is_err());
    }
}
