//! Client input as a log line may show it: escaped and bounded, so a client cannot forge log lines.
//!
//! Usernames, topics, procedure URIs, Origin headers, subprotocol offers and close reasons come from clients.
//! Printed raw, a newline in one starts a fake log line and an ANSI escape rewrites the operator's terminal.
//! Every log site that prints such a string wraps it in [`Escaped`]: control characters, quotes and backslashes
//! come out as Rust escapes (`\n`, `\u{1b}`), and past [`MAX_LOGGED_CHARS`] characters the rest is cut and
//! marked with `…`. This module owns formatting only; what is client input is the log site's call.

use std::fmt;

/// Characters of client input a log line shows at most.
pub const MAX_LOGGED_CHARS: usize = 128;

/// A client-controlled string as a log line shows it: `log::info!("user {}", Escaped(&authid))`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (shown, cut) = match self.0.char_indices().nth(MAX_LOGGED_CHARS) {
            None => (self.0, false),
            Some((end, _)) => (&self.0[..end], true),
        };
        // Every control or format character (newlines, ESC, the bidi overrides) comes out escaped.
        fmt::Display::fmt(&shown.escape_debug(), f)?;
        if cut {
            f.write_str("…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_carriage_returns_cannot_start_a_log_line() {
        let forged = "alice\n2025-01-01T00:00:00Z INFO admin logged in\r";
        let shown = Escaped(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown}");
        assert_eq!(shown, r"alice\n2025-01-01T00:00:00Z INFO admin logged in\r");
    }

    #[test]
    fn terminal_escapes_and_bidi_overrides_are_shown_not_obeyed() {
        let shown = Escaped("\u{1b}[2J\u{1b}]0;pwned\u{7}x\u{202e}gnp.exe").to_string();
        assert!(!shown.chars().any(|c| c.is_control() || c == '\u{202e}'), "{shown}");
        assert_eq!(shown, r"\u{1b}[2J\u{1b}]0;pwned\u{7}x\u{202e}gnp.exe");
    }

    #[test]
    fn ordinary_input_is_unchanged() {
        assert_eq!(Escaped("chat/lobby").to_string(), "chat/lobby");
        assert_eq!(Escaped("José").to_string(), "José");
        assert_eq!(Escaped("").to_string(), "");
    }

    #[test]
    fn long_input_is_cut_on_a_character_boundary_and_marked() {
        let exact = "x".repeat(MAX_LOGGED_CHARS);
        assert_eq!(Escaped(&exact).to_string(), exact);
        let long = "é".repeat(100_000);
        let shown = Escaped(&long).to_string();
        assert_eq!(shown.chars().count(), MAX_LOGGED_CHARS + 1);
        assert!(shown.ends_with("é…"), "{shown}");
        let newlines = "\n".repeat(10_000);
        assert_eq!(Escaped(&newlines).to_string(), format!("{}…", r"\n".repeat(MAX_LOGGED_CHARS)));
    }
}
