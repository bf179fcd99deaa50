use super::*;
use crate::csvio::tests::file;

fn labels() -> LabelSet {
    LabelSet::parse("positif,negatif,netral").unwrap()
}

#[test]
fn examples_are_read_with_their_labels_in_the_label_set() {
    let f = file(b"id;Tweet;label\n1;enak sekali;Positif\n2; jelek ;negatif\n");
    let ex = load(f.path(), None, "label", &labels()).unwrap();
    assert_eq!(
        ex.items,
        [
            Example {
                text: "enak sekali".into(),
                label: 0
            },
            Example {
                text: "jelek".into(),
                label: 1
            }
        ]
    );
}

#[test]
fn bad_examples_are_exit_2_naming_file_row_and_column() {
    let code =
        |r: Result<Examples>| crate::error::exit_code(&r.map(|_| crate::error::Outcome::Complete));
    for (content, want) in [
        (&b""[..], "is empty"),
        (b"text,label\n", "has no examples"),
        (
            b"text,label\na,positif\nb,sarkas\n",
            "row 2: the label 'sarkas'",
        ),
        (b"text,label\n,positif\n", "row 1 has an empty text"),
        (b"text,sentiment\na,positif\n", "no column 'label'"),
        (b"body,label\na,positif\n", "no text column"),
    ] {
        let f = file(content);
        let r = load(f.path(), None, "label", &labels());
        let err = r.as_ref().unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        assert_eq!(code(r), 2);
    }
}

#[test]
fn rows_that_are_examples_are_found_and_refused_by_number() {
    let ex = load(
        file(b"text,label\nenak sekali,positif\njelek,negatif\n").path(),
        None,
        "label",
        &labels(),
    )
    .unwrap();
    let input = file(b"id,text\n1,biasa\n2, enak sekali\n3,jelek\n");
    let found = ex.overlap(input.path(), b',', 1).unwrap();
    assert_eq!(found.iter().map(|o| o.row).collect::<Vec<_>>(), [2, 3]);
    let err = ex
        .refuse_overlap(input.path(), b',', 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 2 ('enak sekali')") && err.contains("and 1 more row"),
        "{err}"
    );
    let clean = file(b"id,text\n1,biasa\n");
    assert!(ex.refuse_overlap(clean.path(), b',', 1).is_ok());
}
