//! `mailplan schema` and `schemas/plan.schema.json`: the committed file is the generated one, and
//! every example plan is valid against it.

use std::path::Path;

use serde_json::Value;

use super::mailplan;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let out = mailplan(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let generated = String::from_utf8(out.stdout).expect("utf-8");
    let committed =
        std::fs::read_to_string(root().join("schemas/plan.schema.json")).unwrap_or_default();
    assert!(
        generated == committed,
        "schemas/plan.schema.json is stale; regenerate it with\n    cargo run -- schema > schemas/plan.schema.json"
    );
}

/// A structural check of an instance against the subset of JSON Schema that schemars emits
/// (`$ref`, `type`, `const`, `enum`, `properties`, `required`, `additionalProperties`, `items`,
/// `oneOf`, `anyOf`, `minimum`); `pattern` and `format` are not checked. Returns the problems.
fn check(root: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return check(root, &root["$defs"][name], value, at, problems);
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let ok = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "null" => value.is_null(),
            _ => false,
        });
        if !ok {
            problems.push(format!("{at}: {value} is not {types:?}"));
            return;
        }
    }
    if let Some(c) = schema.get("const")
        && c != value
    {
        problems.push(format!("{at}: {value} is not {c}"));
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        problems.push(format!("{at}: {n} < {min}"));
    }
    if let Value::Object(map) = value {
        let props = schema.get("properties").and_then(Value::as_object);
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !map.contains_key(key.as_str().unwrap_or_default()) {
                problems.push(format!("{at}: missing {key}"));
            }
        }
        for (k, v) in map {
            let at = format!("{at}.{k}");
            match (
                props.and_then(|p| p.get(k)),
                schema.get("additionalProperties"),
            ) {
                (None, Some(Value::Bool(false))) => problems.push(format!("{at}: not allowed")),
                (Some(s), _) | (None, Some(s @ Value::Object(_))) => {
                    check(root, s, v, &at, problems);
                }
                (None, _) => {}
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            check(root, s, v, &format!("{at}[{i}]"), problems);
        }
    }
    for (key, exactly_one) in [("oneOf", true), ("anyOf", false)] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let matching = branches
                .iter()
                .filter(|b| {
                    let mut p = Vec::new();
                    check(root, b, value, at, &mut p);
                    p.is_empty()
                })
                .count();
            if matching == 0 || (exactly_one && matching > 1) {
                problems.push(format!(
                    "{at}: {value} matches {matching} of the {key} branches"
                ));
            }
        }
    }
}

fn problems(schema: &Value, yaml: &str) -> Vec<String> {
    let value: Value = serde_saphyr::from_str(yaml).expect("YAML");
    let mut problems = Vec::new();
    check(schema, schema, &value, "$", &mut problems);
    problems
}

#[test]
fn every_example_plan_is_valid_against_the_schema() {
    let schema: Value = serde_json::from_str(&mailplan::plan::schema::generate()).expect("json");
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("plans")).expect("plans/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            problems(&schema, &text),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
        // The Raw* types the schema comes from read it too.
        let raw: Result<mailplan::plan::schema::RawPlan, _> = serde_saphyr::from_str(&text);
        assert!(raw.is_ok(), "{}: {raw:?}", path.display());
    }
    assert!(seen >= 4, "only {seen} example plans");

    // The check is not vacuous: what validate refuses, the schema refuses too.
    let bad = "version: 2\nplatforms:\n  a: { type: imap, imap: { host: h, tls: none, port: 0 } }\naccounts:\n  - { adress: x@y.example, from: a, to: a }\n  - { address: x@y.example, from: a, to: a, source-password: hunter2 }\n  - { import: a.csv, wave: 1 }\n";
    let found = problems(&schema, bad);
    for expected in [
        "$.version: 2 is not 1",
        "$.platforms.a.imap: {",
        "$.accounts[0]: {",
        "$.accounts[1]: {",
        "$.accounts[2]: {",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected} not in {found:#?}"
        );
    }
}
