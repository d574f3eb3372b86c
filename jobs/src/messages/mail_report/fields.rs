//! The machine-readable part of a report: RFC 822-style fields in groups separated by blank
//! lines (`message/delivery-status`, RFC 3464: one group about the message, then one per
//! recipient; `message/feedback-report`, RFC 5965: one group), and what a DSN's status code says
//! about the address (RFC 3463).

/// One group of fields, names lower-cased, continuation lines unfolded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Group(Vec<(String, String)>);

impl Group {
    /// The first value of field `name` (lower-case), trimmed.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
    }
}

/// The groups of `text`, in order; lines that are not fields are skipped.
pub(super) fn groups(text: &str) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut current = Group::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.0.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.0.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            current
                .0
                .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    if !current.0.is_empty() {
        groups.push(current);
    }
    groups
}

/// What a per-recipient group of a DSN means for the address, worst last (the derive order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Delivered, relayed or expanded: nothing failed.
    Delivered,
    /// A temporary failure (`Action: delayed`, status 4.x.x): the remote MTA keeps trying.
    Delayed,
    /// Failed for good, but not because of the address (a policy or content refusal, a full
    /// mailbox, our own sender refused): like an SMTP 5xx after the recipient was accepted.
    Failed,
    /// The address does not exist or takes no mail: a hard bounce.
    HardBounce,
}

/// The verdict of one recipient group's `Action` and `Status`. `failed` with a 4.x.x status is
/// a failure: the MTA gave up retrying (Postfix, once `maximal_queue_lifetime` has passed,
/// reports `failed` with the last temporary status, 4.4.1 say), and nothing was delivered.
pub(super) fn verdict(action: Option<&str>, status: Option<&str>) -> Verdict {
    let action = action.map(str::to_ascii_lowercase);
    let code = status.and_then(status_code);
    match (action.as_deref(), code) {
        (Some("delivered" | "relayed" | "expanded"), _) => Verdict::Delivered,
        (Some("failed"), Some((4, _, _))) => Verdict::Failed,
        (Some("delayed"), _) | (_, Some((4, _, _))) => Verdict::Delayed,
        (_, Some((5, subject, detail))) if address_fault(subject, detail) => Verdict::HardBounce,
        (_, Some((5, _, _))) | (Some("failed"), _) => Verdict::Failed,
        _ => Verdict::Delivered,
    }
}

/// `class.subject.detail` of an enhanced status code (the first token of the field: some MTAs
/// add the text of the code after it).
pub(crate) fn status_code(field: &str) -> Option<(u16, u16, u16)> {
    let code = field.split_whitespace().next()?;
    let mut parts = code.split('.').map(|p| p.parse::<u16>().ok());
    let (class, subject, detail) = (parts.next()??, parts.next()??, parts.next()??);
    (parts.next().is_none() && matches!(class, 2 | 4 | 5)).then_some((class, subject, detail))
}

/// Whether a permanent failure is the address's fault (RFC 3463): addressing status (X.1.x),
/// except the sender's own address (X.1.7, X.1.8) and the unspecific X.1.0 (Postfix gives it
/// for its sender checks: `550 5.1.0 <bounces@…>: Sender address rejected`); a disabled
/// mailbox (X.2.1); no route to the address's domain (X.4.4). A full mailbox (X.2.2), policy (X.7.x) and content (X.6.x)
/// refusals are not: suppressing the guest for them would lose mail they want.
pub(crate) fn address_fault(subject: u16, detail: u16) -> bool {
    match subject {
        1 => !matches!(detail, 0 | 7 | 8),
        2 => detail == 1,
        4 => detail == 4,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_split_by_blank_lines_and_unfolded() {
        let text = "Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Sun, 6 Dec 2026\r\n\r\n\
                    Final-Recipient: rfc822; guest@example.com\r\nAction: failed\r\n\
                    Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <guest@example.com>:\r\n \
                    user unknown\r\n";
        let groups = groups(text);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].get("reporting-mta"), Some("dns; mx.example.net"));
        assert_eq!(groups[1].get("action"), Some("failed"));
        assert_eq!(
            groups[1].get("diagnostic-code"),
            Some("smtp; 550 5.1.1 <guest@example.com>: user unknown")
        );
    }

    #[test]
    fn status_codes_say_whose_fault_a_failure_is() {
        let failed = Some("failed");
        for (status, expected) in [
            ("5.1.1", Verdict::HardBounce),
            ("5.1.10", Verdict::HardBounce),
            ("5.2.1", Verdict::HardBounce),
            ("5.4.4", Verdict::HardBounce),
            (
                "5.1.1 (bad destination mailbox address)",
                Verdict::HardBounce,
            ),
            ("5.1.7", Verdict::Failed),
            ("5.1.0", Verdict::Failed),
            ("5.2.2", Verdict::Failed),
            ("5.7.1", Verdict::Failed),
            ("5.6.0", Verdict::Failed),
            ("4.4.1", Verdict::Failed),
            ("x.y.z", Verdict::Failed),
        ] {
            assert_eq!(verdict(failed, Some(status)), expected, "{status}");
        }
        assert_eq!(verdict(Some("Delayed"), Some("4.4.7")), Verdict::Delayed);
        assert_eq!(verdict(None, Some("4.2.2")), Verdict::Delayed);
        assert_eq!(
            verdict(Some("delivered"), Some("2.0.0")),
            Verdict::Delivered
        );
        assert_eq!(verdict(Some("relayed"), None), Verdict::Delivered);
        assert_eq!(verdict(None, Some("5.1.1")), Verdict::HardBounce);
        assert_eq!(verdict(None, None), Verdict::Delivered);
    }

    #[test]
    fn malformed_status_codes_are_none() {
        for field in ["", "5", "5.1", "5.1.1.1", "6.1.1", "550"] {
            assert_eq!(status_code(field), None, "{field}");
        }
    }
}
