//! Text from outside (a subject, a provider's answer, a remote server's diagnostic) made safe to
//! keep on one line: in a header, a `last_error`, a log field.

/// Control characters (CR, LF, tab…) become spaces; at most `max_chars` characters, trimmed.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect();
    line.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn control_characters_become_spaces_and_the_line_is_cut_and_trimmed() {
        assert_eq!(one_line(" a\r\nb\tc ", usize::MAX), "a  b c");
        assert_eq!(one_line("héllo world", 5), "héllo");
        assert_eq!(one_line("ab  cd", 3), "ab");
    }
}
