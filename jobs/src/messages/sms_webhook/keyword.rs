//! What a guest's reply to one of our texts asks for. The keywords are the ones carriers and
//! Twilio-style providers act on by default (the provider then blocks, or unblocks, every later
//! message from our number to that guest, and sends the confirmation itself); matching them the
//! same way keeps our suppression list in step with what the provider will let through.

/// A reply, read as a keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT, REVOKE: no more texts.
    OptOut,
    /// START, YES, UNSTOP: texts again.
    OptIn,
    /// HELP, INFO: the provider answers it; nothing to record.
    Help,
    /// Anything else (a guest's ordinary reply).
    Other,
}

impl Keyword {
    /// The whole message must be the keyword, in any case, with surrounding spaces and trailing
    /// punctuation ignored ("Stop." counts, "stop texting me" does not): the rule providers
    /// apply, so we never suppress a guest the provider still delivers to, or the reverse.
    pub fn of(body: &str) -> Keyword {
        let word: String = body
            .trim()
            .trim_end_matches(['.', '!'])
            .split_whitespace()
            .collect::<String>()
            .to_ascii_uppercase();
        match word.as_str() {
            "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "OPTOUT"
            | "REVOKE" => Keyword::OptOut,
            "START" | "YES" | "UNSTOP" => Keyword::OptIn,
            "HELP" | "INFO" => Keyword::Help,
            _ => Keyword::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::OptOut => "opt_out",
            Keyword::OptIn => "opt_in",
            Keyword::Help => "help",
            Keyword::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_whole_messages_in_any_case() {
        for body in [
            "STOP",
            "stop",
            " Stop. ",
            "Stop all",
            "unsubscribe!",
            "QUIT",
            "OptOut",
        ] {
            assert_eq!(Keyword::of(body), Keyword::OptOut, "{body:?}");
        }
        for body in ["START", "yes", "Unstop"] {
            assert_eq!(Keyword::of(body), Keyword::OptIn, "{body:?}");
        }
        assert_eq!(Keyword::of("help"), Keyword::Help);
        for body in [
            "stop texting me",
            "Yes please, table for 2",
            "",
            "STOPPED",
            "see you",
        ] {
            assert_eq!(Keyword::of(body), Keyword::Other, "{body:?}");
        }
    }
}
