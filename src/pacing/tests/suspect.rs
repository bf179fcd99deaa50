//! Errors that follow a key rather than a row: a key set aside as suspect, its probe,
//! and a suspicion the row explains.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_key_rejected_while_others_succeed_is_set_aside_then_invalid_after_a_failed_probe() {
    let d = dispatcher(&[0, 1], Limits::default(), Duration::ZERO);
    let odd = CallError::Rejected {
        status: 400,
        message: "No connected db.".into(),
    };
    // No key has succeeded yet: the row or the provider may be at fault.
    assert!(d.key_error(1, &odd).health.is_empty());
    d.succeeded(0, &RateHeaders::default(), 1);
    let changes = d.key_error(1, &odd);
    assert_eq!(changes.health[0].to.name(), "suspect");
    assert!(
        changes.health[0]
            .reason
            .to_string()
            .contains("No connected db."),
        "{changes:?}"
    );
    // Set aside: every grant goes to key 0 meanwhile.
    for _ in 0..5 {
        assert_eq!(key(&d, 1).await, 0);
    }
    // After the set-aside, one probe goes to key 1; it fails, and the key is invalid.
    tokio::time::advance(crate::keys::suspect::SET_ASIDE).await;
    let probe = d.acquire_avoiding(1, &[0], &no_log).await;
    assert_eq!(probe, Grant::Key(1));
    let changes = d.key_error(1, &odd);
    assert_eq!(changes.health[0].to.name(), "invalid");
    assert!(
        changes.health[0]
            .reason
            .to_string()
            .starts_with("failed its probe"),
        "{changes:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_suspicion_the_row_explains_is_lifted() {
    let d = dispatcher(&[0, 1], Limits::default(), Duration::ZERO);
    d.succeeded(0, &RateHeaders::default(), 1);
    let odd = CallError::Rejected {
        status: 422,
        message: "bad".into(),
    };
    assert_eq!(d.key_error(1, &odd).health[0].to.name(), "suspect");
    assert_eq!(d.row_at_fault(1).health[0].to.name(), "available");
    assert!(d.other_key(&[0]));
}
