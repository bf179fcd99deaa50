//! End-to-end labeling against the fake provider: rotation, failure classes, replies.

mod common;

use common::*;

#[test]
fn labels_every_row_in_order_across_three_keys_without_leaking_keys() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED, KEY2, KEY3]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2, KEY3]);
    let texts = smsa(30);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let out = run(&mut sb.label(&fake, &input, &output, &["-v"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    for k in [PLANTED, KEY2, KEY3] {
        assert_eq!(fake.requests_for(k), 10, "round robin over the keys");
    }
    assert!(stderr(&out).contains("3/3 available"), "{}", stderr(&out));
    sb.assert_no_leak(&[&out], &[PLANTED, KEY2, KEY3]);
}
