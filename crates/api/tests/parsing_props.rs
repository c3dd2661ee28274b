//! Property tests of request parsing (`secrets_api::body` and the bodies of
//! `secrets_api::handlers`): the code that turns untrusted bytes
//! into domain values.
//!
//! Whatever the body — random bytes, JSON of any shape, objects with repeated keys, nesting far
//! past any sane depth, or a valid body damaged at random — every parser returns a value or a
//! 400 (`invalid_json` or `invalid_request`), never panics, accepts exactly what SPEC 3 allows,
//! and never repeats in its message anything that was sent: a rejected field may hold a secret.
//!
//! Each property runs a modest number of cases by default so that `make test` stays fast;
//! `PROPTEST_CASES` raises it (`make fuzz` does).

use std::collections::HashSet;

use actix_web::ResponseError as _;
use proptest::prelude::*;
use proptest::sample::Index;
use secrets_api::handlers::namespaces::{parse_bulk, parse_create};
use secrets_api::handlers::secrets::{parse_patch, parse_put};
use secrets_api::{ApiError, ErrorCode};
use serde_json::Value;

/// `cases` unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// What each parser made of a body: accepted, or the error.
struct Outcomes {
    put: Result<(), ApiError>,
    patch: Result<(), ApiError>,
    bulk: Result<(), ApiError>,
    create: Result<(), ApiError>,
}

fn parse_all(body: &[u8]) -> Outcomes {
    Outcomes {
        put: parse_put(body).map(drop),
        patch: parse_patch(body).map(drop),
        bulk: parse_bulk(body).map(drop),
        create: parse_create(body),
    }
}

impl Outcomes {
    fn each(&self) -> [(&'static str, &Result<(), ApiError>); 4] {
        [
            ("put", &self.put),
            ("patch", &self.patch),
            ("bulk", &self.bulk),
            ("create", &self.create),
        ]
    }

    /// Every refusal is a 400 with one of the two body codes.
    fn all_refusals_are_400(&self) -> Result<(), TestCaseError> {
        for (parser, outcome) in self.each() {
            if let Err(error) = outcome {
                prop_assert_eq!(error.status_code().as_u16(), 400, "{}: {}", parser, error);
                prop_assert!(
                    matches!(
                        error.code(),
                        ErrorCode::InvalidJson | ErrorCode::InvalidRequest
                    ),
                    "{}: {}",
                    parser,
                    error
                );
            }
        }
        Ok(())
    }

    /// No refusal repeats any 12 consecutive characters of `sent`.
    fn never_echo(&self, sent: &str) -> Result<(), TestCaseError> {
        let windows: Vec<&str> = (0..=sent.len().saturating_sub(12))
            .filter_map(|start| sent.get(start..start + 12))
            .collect();
        for (parser, outcome) in self.each() {
            if let Err(error) = outcome {
                let shown = error.to_string();
                for window in &windows {
                    prop_assert!(
                        !shown.contains(window),
                        "{} echoed what was sent: {}",
                        parser,
                        shown
                    );
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0i64..600).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((field_name(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Field names: the ones the parsers know, valid secret names, and anything else (empty,
/// control characters, too long for a secret name).
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(vec!["key", "value", "count", "KEY", "value "])
            .prop_map(str::to_owned),
        2 => "[A-Z_]{1,12}",
        1 => "\\PC{0,8}",
        1 => any::<String>(),
        1 => "[a-z]{250,260}",
    ]
}

/// A JSON object written by hand, so that it can repeat a key.
fn object_text(entries: &[(String, Value)]) -> String {
    let fields: Vec<String> = entries
        .iter()
        .map(|(name, value)| format!("{}:{value}", Value::String(name.clone())))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn is_secret_name(name: &str) -> bool {
    (1..=256).contains(&name.len()) && !name.chars().any(|c| c <= '\u{1f}' || c == '\u{7f}')
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// Random bytes, and random runs of JSON's own punctuation, are parsed or refused with a
    /// 400, and never panic.
    #[test]
    fn arbitrary_bytes_are_parsed_or_refused_with_400(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            "[\\{\\}\\[\\]\":, \\\\a-z0-9.eE+\\-]{0,64}".prop_map(String::into_bytes),
        ],
    ) {
        parse_all(&body).all_refusals_are_400()?;
    }

    /// Objects of any fields and values, repeated keys included, are accepted by a parser
    /// exactly when SPEC 3 allows it, and refused with a 400 otherwise.
    #[test]
    fn json_objects_are_accepted_exactly_when_valid(
        entries in proptest::collection::vec((field_name(), json()), 0..5),
        repeat in proptest::option::of(any::<Index>()),
    ) {
        let mut entries = entries;
        if let (Some(at), false) = (repeat, entries.is_empty()) {
            let copy = entries[at.index(entries.len())].clone();
            entries.push(copy);
        }
        let body = object_text(&entries);
        let outcomes = parse_all(body.as_bytes());
        outcomes.all_refusals_are_400()?;

        let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
        let unique = names.iter().collect::<HashSet<_>>().len() == names.len();
        let field = |name: &str| entries.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let exactly = |wanted: &[&str]| {
            unique && names.len() == wanted.len() && wanted.iter().all(|w| names.contains(w))
        };

        let put_ok = exactly(&["key", "value"])
            && matches!(field("key"), Some(Value::String(name)) if is_secret_name(name))
            && matches!(field("value"), Some(Value::String(_)));
        prop_assert_eq!(outcomes.put.is_ok(), put_ok, "put {}", body);

        let patch_ok = unique
            && entries.iter().all(|(name, value)| {
                is_secret_name(name) && matches!(value, Value::String(_) | Value::Null)
            });
        prop_assert_eq!(outcomes.patch.is_ok(), patch_ok, "patch {}", body);

        let bulk_ok = exactly(&["count"])
            && field("count").and_then(Value::as_i64).is_some_and(|n| (1..=500).contains(&n));
        prop_assert_eq!(outcomes.bulk.is_ok(), bulk_ok, "bulk {}", body);

        prop_assert_eq!(outcomes.create.is_ok(), entries.is_empty(), "create {}", body);
    }

    /// Any JSON document, of any type at the top, is parsed or refused with a 400.
    #[test]
    fn any_json_document_is_parsed_or_refused_with_400(value in json()) {
        parse_all(value.to_string().as_bytes()).all_refusals_are_400()?;
    }

    /// A long random string placed anywhere in a body (a value, a name, an unknown field, a
    /// wrongly typed field, deep inside), and the body then damaged at random, never shows up
    /// in an error message.
    #[test]
    fn error_messages_never_repeat_what_was_sent(
        secret in "[A-Za-z0-9]{32,64}",
        place in 0usize..10,
        damage in proptest::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 0..3),
    ) {
        let s = &secret;
        let body = match place {
            0 => format!(r#"{{"key": "A", "value": "{s}"}}"#),
            1 => format!(r#"{{"key": "{s}\u0001", "value": "v"}}"#),
            2 => format!(r#"{{"key": "{}", "value": "v"}}"#, s.repeat(10)),
            3 => format!(r#"{{"{s}": "v"}}"#),
            4 => format!(r#"{{"{s}": 1, "key": "A", "value": "v"}}"#),
            5 => format!(r#"{{"count": "{s}"}}"#),
            6 => format!(r#"{{"A": ["{s}"]}}"#),
            7 => format!(r#"{{"A": "{s}", "A": "{s}"}}"#),
            8 => format!(r#"{{"key": "A", "value": {s}}}"#),
            _ => format!(r#"{{"value": "{s}", "key": {{"a": "{s}"}}}}"#),
        };
        let mut body = body.into_bytes();
        for (at, byte, how) in damage {
            if body.is_empty() {
                break;
            }
            let at = at.index(body.len());
            match how {
                0 => body[at] = byte,
                1 => body.truncate(at),
                _ => body.insert(at, byte),
            }
        }
        let outcomes = parse_all(&body);
        outcomes.all_refusals_are_400()?;
        outcomes.never_echo(&secret)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Nesting past serde_json's recursion limit (128) is refused as `invalid_json`, however
    /// deep and of whatever brackets, without overflowing the stack; nesting below it is valid
    /// JSON that a merge patch refuses as a value that is not a string.
    #[test]
    fn deep_nesting_is_refused_as_invalid_json(
        depth in prop_oneof![1usize..120, 130usize..20_000],
        brackets in proptest::collection::vec(any::<bool>(), 1..16),
        closed in any::<bool>(),
    ) {
        let arrays = |level: usize| brackets[level % brackets.len()];
        let open: String = (0..depth)
            .map(|level| if arrays(level) { "[" } else { r#"{"a":"# })
            .collect();
        let close: String = (0..depth)
            .rev()
            .map(|level| if arrays(level) { ']' } else { '}' })
            .collect();
        let nested = if closed { format!("{open}null{close}") } else { open };
        let patch = format!(r#"{{"A": {nested}}}"#);
        let put = format!(r#"{{"key": "A", "value": {nested}}}"#);
        let expected = if depth >= 128 {
            ErrorCode::InvalidJson
        } else if closed {
            ErrorCode::InvalidRequest
        } else {
            ErrorCode::InvalidJson
        };
        for (parser, outcome) in [
            ("patch", parse_patch(patch.as_bytes()).map(drop)),
            ("put", parse_put(put.as_bytes()).map(drop)),
            ("bulk", parse_bulk(patch.as_bytes()).map(drop)),
            ("create", parse_create(patch.as_bytes())),
        ] {
            let error = outcome.expect_err("a nested value is never accepted");
            prop_assert_eq!(error.code(), expected, "{} at depth {}: {}", parser, depth, error);
        }
    }
}
