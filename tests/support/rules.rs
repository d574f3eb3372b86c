//! The scripted answers of the stub providers (`smtp`, `sms`): per recipient, an action to take
//! a number of times or always, in the order the rules were given.

/// One scripted answer.
pub struct Rule<A> {
    pub recipient: String,
    pub action: A,
    /// `None`: always.
    pub remaining: Option<usize>,
}

/// The first rule for `recipient` with times left: its action, one of its times used.
pub fn take_action<A: Copy>(rules: &mut [Rule<A>], recipient: &str) -> Option<A> {
    let rule = rules
        .iter_mut()
        .find(|r| r.recipient == recipient && r.remaining.is_none_or(|n| n > 0))?;
    if let Some(n) = rule.remaining.as_mut() {
        *n -= 1;
    }
    Some(rule.action)
}
