use super::*;
use base64::Engine;

const SEND: &str = "0b6f7a9e-2c1d-4e5f-8a9b-0c1d2e3f4a5b";

fn original_headers(delivery: i64) -> String {
    format!(
        "From: Ann & Bob <hello@ann-and-bob.example>\r\nTo: guest@example.com\r\n\
         Subject: The ceremony moved to 3 pm\r\n\
         Message-ID: <delivery-{delivery}.{SEND}@ann-and-bob.example>\r\n"
    )
}

/// A DSN as Postfix writes it: human part, `message/delivery-status`, the original's headers.
fn dsn(action: &str, status: &str, third_part: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n\
         To: bounces@jobs.wedsync.test\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <20261206.ABC@mx.example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"B0UND\"\r\n\r\n\
         --B0UND\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n\
         --B0UND\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; forwarded-to@elsewhere.example\r\n\
         Original-Recipient: rfc822;guest@example.com\r\nAction: {action}\r\n\
         Status: {status}\r\nDiagnostic-Code: smtp; 550 {status} <forwarded-to@elsewhere.example>:\r\n\
         \x20   Recipient address rejected: User unknown\r\n\r\n\
         {third_part}--B0UND--\r\n"
    )
}

fn headers_part(delivery: i64) -> String {
    format!(
        "--B0UND\r\nContent-Type: text/rfc822-headers\r\n\r\n{}\r\n",
        original_headers(delivery)
    )
}

fn bounce(verdict: Verdict, status: &str) -> Report {
    Report::DeliveryStatus {
        verdict,
        status: Some(status.to_owned()),
        diagnostic: Some(format!(
            "smtp; 550 {status} <forwarded-to@elsewhere.example>: Recipient address rejected: \
             User unknown"
        )),
    }
}

fn about(delivery: i64, report: Report) -> Result<MailReport, ReportError> {
    Ok(MailReport {
        delivery: DeliveryRef {
            delivery_id: delivery,
            send_id: SEND.to_owned(),
        },
        report,
    })
}

#[test]
fn a_dsn_names_the_delivery_by_the_original_message_id_and_says_how_it_failed() {
    for (action, status, verdict) in [
        ("failed", "5.1.1", Verdict::HardBounce),
        ("failed", "5.7.1", Verdict::Failed),
        ("delayed", "4.4.1", Verdict::Delayed),
        ("delivered", "2.0.0", Verdict::Delivered),
    ] {
        let raw = dsn(action, status, &headers_part(42));
        assert_eq!(
            parse(raw.as_bytes()),
            about(42, bounce(verdict, status)),
            "{action} {status}"
        );
    }
}

#[test]
fn the_original_returned_whole_and_encoded_is_read_too() {
    let original = format!("{}\r\nThe ceremony moved.\r\n", original_headers(7));
    let encoded = base64::engine::general_purpose::STANDARD.encode(&original);
    let part = format!(
        "--B0UND\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {encoded}\r\n"
    );
    assert_eq!(
        parse(dsn("failed", "5.1.1", &part).as_bytes()),
        about(7, bounce(Verdict::HardBounce, "5.1.1"))
    );
}

#[test]
fn a_dsn_piped_with_bare_line_feeds_is_read_alike() {
    let raw = dsn("failed", "5.1.1", &headers_part(42)).replace("\r\n", "\n");
    assert_eq!(
        parse(raw.as_bytes()),
        about(42, bounce(Verdict::HardBounce, "5.1.1"))
    );
}

#[test]
fn of_several_recipient_groups_the_worst_counts() {
    let raw = dsn("delayed", "4.2.0", &headers_part(42)).replace(
        "Reporting-MTA: dns; mx.example.net\r\n\r\n",
        "Reporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; other@example.com\r\nAction: failed\r\nStatus: 5.2.1\r\n\r\n",
    );
    let Ok(MailReport {
        report: Report::DeliveryStatus {
            verdict, status, ..
        },
        ..
    }) = parse(raw.as_bytes())
    else {
        panic!("not read as a DSN");
    };
    assert_eq!(
        (verdict, status.as_deref()),
        (Verdict::HardBounce, Some("5.2.1"))
    );
}

#[test]
fn a_feedback_report_is_a_complaint_when_the_guest_called_it_spam() {
    for (feedback_type, complaint) in [("abuse", true), ("Fraud", true), ("not-spam", false)] {
        let raw = format!(
            "From: feedback@fbl.mail.example\r\nTo: fbl@jobs.wedsync.test\r\n\
             Subject: FW: The ceremony moved\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n\
             --F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\
             --F\r\nContent-Type: message/feedback-report\r\n\r\n\
             Feedback-Type: {feedback_type}\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n\
             Original-Rcpt-To: redacted@example.com\r\n\r\n\
             --F\r\nContent-Type: message/rfc822\r\n\r\n{}\r\nThe ceremony moved.\r\n--F--\r\n",
            original_headers(9)
        );
        assert_eq!(
            parse(raw.as_bytes()),
            about(
                9,
                Report::Feedback {
                    feedback_type: feedback_type.to_ascii_lowercase(),
                    complaint,
                }
            ),
            "{feedback_type}"
        );
    }
}

#[test]
fn a_report_must_name_exactly_one_delivery() {
    let none = dsn("failed", "5.1.1", "");
    assert_eq!(parse(none.as_bytes()), Err(ReportError::NoDelivery));
    let two = dsn(
        "failed",
        "5.1.1",
        &format!("{}{}", headers_part(1), headers_part(2)),
    );
    assert_eq!(
        parse(two.as_bytes()),
        Err(ReportError::SeveralDeliveries(2))
    );
    // The same delivery named twice (its headers and `In-Reply-To`) is one.
    let echoed = dsn("failed", "5.1.1", &headers_part(3)).replacen(
        "MIME-Version",
        &format!(
            "In-Reply-To: <delivery-3.{}@ann-and-bob.example>\r\nMIME-Version",
            SEND.to_uppercase()
        ),
        1,
    );
    assert_eq!(
        parse(echoed.as_bytes()),
        about(3, bounce(Verdict::HardBounce, "5.1.1"))
    );
}

#[test]
fn mail_that_is_no_report_is_refused() {
    let reply = format!(
        "From: guest@example.com\r\nTo: hello@ann-and-bob.example\r\nSubject: Re: moved\r\n\
         In-Reply-To: <delivery-5.{SEND}@ann-and-bob.example>\r\n\r\nSee you there!\r\n"
    );
    assert_eq!(parse(reply.as_bytes()), Err(ReportError::NotAReport));
    // A delivery-status part without a recipient group.
    let empty = dsn("failed", "5.1.1", &headers_part(1)).replace(
        "Final-Recipient: rfc822; forwarded-to@elsewhere.example\r\n\
         Original-Recipient: rfc822;guest@example.com\r\nAction: failed\r\n",
        "",
    );
    let empty = empty.replace(
        "Status: 5.1.1\r\nDiagnostic-Code",
        "X-Status: 5.1.1\r\nX-Diagnostic",
    );
    assert_eq!(parse(empty.as_bytes()), Err(ReportError::NotAReport));
    assert_eq!(parse(b""), Err(ReportError::NotAMessage));
}

#[test]
fn ids_of_other_shapes_are_not_deliveries() {
    let text = format!(
        "delivery-12.{SEND}x@a delivery-.{SEND}@a delivery-12{SEND}@a \
         delivery-99999999999999999999.{SEND}@a delivery-12.{}@a",
        &SEND[..35]
    );
    assert_eq!(delivery_refs(&text).count(), 0);
    let good = format!("<delivery-12.{SEND}@a>");
    assert_eq!(delivery_refs(&good).count(), 1);
}

#[test]
fn a_dsn_for_our_sender_refused_bounces_nobody() {
    for (status, diagnostic) in [
        ("5.1.0", "Recipient address rejected: User unknown"),
        ("5.1.1", "Sender address rejected: Domain not found"),
    ] {
        let raw = dsn("failed", status, &headers_part(42))
            .replace("Recipient address rejected: User unknown", diagnostic);
        let Ok(MailReport {
            report: Report::DeliveryStatus { verdict, .. },
            ..
        }) = parse(raw.as_bytes())
        else {
            panic!("not read as a DSN");
        };
        assert_eq!(verdict, Verdict::Failed, "{status} {diagnostic}");
    }
}
