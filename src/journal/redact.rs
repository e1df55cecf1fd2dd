//! Secrets stay out of the journal (DESIGN.md): every part is redacted before it is written, and replay redacts a
//! replayed Decision the same way before comparing it with the recorded one.
//!
//! Secret values, replaced by [`REDACTED`] wherever they appear in a JSON document:
//! - `redisPassword.value` and `redisUsername.value` (GCS fault-tolerance options);
//! - `rayStartParams["redis-password"]` (and `redis-username`), and their `--redis-password=`/`--redis-username=`
//!   flags in command lines, where the builders copy them;
//! - the password inside a Redis URL: `redisAddress`, and the env var `RAY_REDIS_ADDRESS`;
//! - a Secret's `data` and `stringData` values;
//! - the `value` of any env var (any `{name, value}` pair) whose name contains PASSWORD, TOKEN or SECRET (ignoring
//!   case), and of `REDIS_USERNAME`, where the builders put the Redis username.
//!
//! A secret given by reference (`valueFrom`, `$REDIS_PASSWORD`) is not a value and stays as it is.
//!
//! A job's output lines are text, not documents ([`redact_log_line`]): what can be told there is the value of an
//! assignment `NAME=value` (or `NAME="value"`) whose name contains PASSWORD, TOKEN or SECRET (ignoring case: env
//! dumps, `--redis-password=`, `?token=` in a URL), the value after `--redis-password`/`--redis-username`, and the
//! password inside a `redis://` or `rediss://` URL. A secret printed any other way (`password: s3`, a bare value) is
//! not recognised.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::machine::Part;

/// What every secret value becomes.
pub const REDACTED: &str = "<redacted>";

/// Words of which every secret-bearing document contains one (ignoring case). A part without any is written as it
/// is, unparsed: most parts (statuses, Pod views, timestamps) need no walk. `\u` covers a key spelled with escapes.
const NEEDLES: [&[u8]; 5] = [b"password", b"token", b"secret", b"redis", b"\\u"];

const SECRET_ENV_WORDS: [&str; 3] = ["PASSWORD", "TOKEN", "SECRET"];
const SECRET_FLAGS: [&str; 2] = ["--redis-password", "--redis-username"];
const SECRET_START_PARAMS: [&str; 2] = ["redis-password", "redis-username"];

/// Redacts one part; the bytes come back untouched (borrowed) when the part holds no secret.
pub fn redact_part(part: &Part) -> Result<Cow<'_, Part>, serde_json::Error> {
    Ok(match redact_json(&part.json)? {
        Cow::Borrowed(_) => Cow::Borrowed(part),
        Cow::Owned(json) => Cow::Owned(Part { name: part.name.clone(), json }),
    })
}

/// Redacts a JSON document.
pub fn redact_json(json: &[u8]) -> Result<Cow<'_, [u8]>, serde_json::Error> {
    if !NEEDLES.iter().any(|needle| contains_ignoring_case(json, needle)) {
        return Ok(Cow::Borrowed(json));
    }
    let mut value: Value = serde_json::from_slice(json)?;
    if redact_value(&mut value) { Ok(Cow::Owned(serde_json::to_vec(&value)?)) } else { Ok(Cow::Borrowed(json)) }
}

/// Redacts a JSON value in place; true when anything was replaced.
pub fn redact_value(value: &mut Value) -> bool {
    match value {
        Value::Object(map) => redact_object(map),
        Value::Array(items) => items.iter_mut().fold(false, |changed, item| redact_value(item) | changed),
        Value::String(text) => redact_flags(text),
        _ => false,
    }
}

fn redact_object(map: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    if map.get("kind").and_then(Value::as_str) == Some("Secret") {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(entries)) = map.get_mut(field) {
                entries.values_mut().for_each(|entry| changed |= replace(entry));
            }
        }
    }
    for credential in ["redisPassword", "redisUsername"] {
        if let Some(Value::Object(credential)) = map.get_mut(credential)
            && let Some(value) = credential.get_mut("value")
        {
            changed |= replace(value);
        }
    }
    if let Some(Value::Object(params)) = map.get_mut("rayStartParams") {
        for param in SECRET_START_PARAMS {
            // `$REDIS_PASSWORD` names a variable, as it does on the command line built from it (`redact_flags`).
            if let Some(value) = params.get_mut(param).filter(|value| !is_reference(value)) {
                changed |= replace(value);
            }
        }
    }
    if let Some(Value::String(address)) = map.get_mut("redisAddress") {
        changed |= redact_url_password(address);
    }
    changed |= redact_env_pair(map);
    for value in map.values_mut() {
        changed |= redact_value(value);
    }
    changed
}

/// An env var, or anything shaped like one (`{name, value}`: an HTTP header of a probe, say).
fn redact_env_pair(map: &mut Map<String, Value>) -> bool {
    let Some(name) = map.get("name").and_then(Value::as_str) else { return false };
    let upper = name.to_ascii_uppercase();
    let secret = SECRET_ENV_WORDS.iter().any(|word| upper.contains(word)) || upper == "REDIS_USERNAME";
    let address = upper == "RAY_REDIS_ADDRESS";
    match map.get_mut("value") {
        Some(value) if secret => replace(value),
        Some(Value::String(url)) if address => redact_url_password(url),
        _ => false,
    }
}

/// Replaces a present value; `null` (no value given) stays null.
fn replace(value: &mut Value) -> bool {
    if value.is_null() || value.as_str() == Some(REDACTED) {
        return false;
    }
    *value = Value::String(REDACTED.to_string());
    true
}

/// `redis://user:PASSWORD@host:6379` (the userinfo after the first colon), or `redis://PASSWORD@host` (a userinfo
/// without a colon is how several clients take a bare password).
fn redact_url_password(url: &mut String) -> bool {
    let start = url.find("://").map_or(0, |scheme| scheme + 3);
    let Some(at) = url[start..].rfind('@').map(|at| start + at) else { return false };
    let secret_start = url[start..at].find(':').map_or(start, |colon| start + colon + 1);
    if &url[secret_start..at] == REDACTED || secret_start == at {
        return false;
    }
    url.replace_range(secret_start..at, REDACTED);
    true
}

/// `--redis-password=VALUE` or `--redis-password VALUE` inside a command line; a `$VAR` reference is no secret.
fn redact_flags(text: &mut String) -> bool {
    let mut changed = false;
    for flag in SECRET_FLAGS {
        let mut from = 0;
        while let Some(found) = text[from..].find(flag).map(|found| from + found) {
            let mut value_start = found + flag.len();
            match text[value_start..].chars().next() {
                Some('=') | Some(' ') => value_start += 1,
                _ => {
                    from = value_start;
                    continue;
                }
            }
            let value_end = text[value_start..]
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .map_or(text.len(), |end| value_start + end);
            let value = &text[value_start..value_end];
            if !value.is_empty() && !is_reference(&Value::from(value)) && value != REDACTED {
                text.replace_range(value_start..value_end, REDACTED);
                changed = true;
            }
            from = value_start;
        }
    }
    changed
}

/// Words a log line must contain (upper-cased) for any of its text to be a secret [`redact_log_line`] knows.
const LOG_NEEDLES: [&str; 4] = ["PASSWORD", "TOKEN", "SECRET", "REDIS"];

/// Redacts one line of a job's output (module docs); the line comes back borrowed when it holds no secret.
pub fn redact_log_line(line: &str) -> Cow<'_, str> {
    let upper = line.to_ascii_uppercase();
    if !LOG_NEEDLES.iter().any(|needle| upper.contains(needle)) {
        return Cow::Borrowed(line);
    }
    let mut text = line.to_string();
    let changed = redact_assignments(&mut text) | redact_flags(&mut text) | redact_redis_urls(&mut text);
    if changed { Cow::Owned(text) } else { Cow::Borrowed(line) }
}

/// `NAME=value` where NAME contains a secret word; the value ends at white space, a quote or a separator, or is
/// quoted.
fn redact_assignments(text: &mut String) -> bool {
    let mut changed = false;
    let mut from = 0;
    while let Some(equals) = text[from..].find('=').map(|found| from + found) {
        from = equals + 1;
        let name_start = text[..equals]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map_or(0, |at| at + text[at..].chars().next().map_or(1, char::len_utf8));
        let name = text[name_start..equals].to_ascii_uppercase();
        if !SECRET_ENV_WORDS.iter().any(|word| name.contains(word)) {
            continue;
        }
        let (start, end) = value_span(text, equals + 1);
        let value = &text[start..end];
        // `TOKEN == x` compares, `$TOKEN` refers.
        if value.is_empty() || value.starts_with(['=', '$']) || value == REDACTED {
            continue;
        }
        text.replace_range(start..end, REDACTED);
        changed = true;
        from = start + REDACTED.len();
    }
    changed
}

/// Where the value starting at `at` lies: inside its quotes, or up to white space, a quote or a separator.
fn value_span(text: &str, at: usize) -> (usize, usize) {
    match text[at..].chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let start = at + 1;
            (start, text[start..].find(quote).map_or(text.len(), |end| start + end))
        }
        _ => {
            let end = text[at..].find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | '&' | ')'));
            (at, end.map_or(text.len(), |end| at + end))
        }
    }
}

/// The password of every `redis://` or `rediss://` URL in the text (the URL ends at white space or a quote).
fn redact_redis_urls(text: &mut String) -> bool {
    let mut changed = false;
    let mut from = 0;
    while let Some(start) = text[from..].to_ascii_lowercase().find("redis").map(|found| from + found) {
        from = start + "redis".len();
        let rest = &text[from..];
        if !(rest.starts_with("://") || rest.starts_with("s://")) {
            continue;
        }
        let end = text[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\''))
            .map_or(text.len(), |end| start + end);
        let mut url = text[start..end].to_string();
        if redact_url_password(&mut url) {
            text.replace_range(start..end, &url);
            changed = true;
        }
        from = start + url.len();
    }
    changed
}

/// A shell variable reference (`$REDIS_PASSWORD`, `${REDIS_PASSWORD}`): the secret is elsewhere.
fn is_reference(value: &Value) -> bool {
    value.as_str().is_some_and(|text| text.starts_with('$'))
}

fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    #[rstest]
    #[case::redis_password(
        json!({"gcsFaultToleranceOptions": {"redisPassword": {"value": "s3"}, "redisAddress": "redis:6379"}}),
        json!({"gcsFaultToleranceOptions": {"redisPassword": {"value": REDACTED}, "redisAddress": "redis:6379"}})
    )]
    #[case::redis_username(
        json!({"redisUsername": {"value": "admin"}}),
        json!({"redisUsername": {"value": REDACTED}})
    )]
    #[case::credential_by_reference(
        json!({"redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis", "key": "password"}}}}),
        json!({"redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis", "key": "password"}}}})
    )]
    #[case::start_param(
        json!({"rayStartParams": {"redis-password": "s3", "num-cpus": "1"}}),
        json!({"rayStartParams": {"redis-password": REDACTED, "num-cpus": "1"}})
    )]
    #[case::start_param_reference(
        json!({"rayStartParams": {"redis-password": "$REDIS_PASSWORD"}}),
        json!({"rayStartParams": {"redis-password": "$REDIS_PASSWORD"}})
    )]
    #[case::redis_url_with_user(
        json!({"redisAddress": "redis://admin:s3@redis:6379/0"}),
        json!({"redisAddress": format!("redis://admin:{REDACTED}@redis:6379/0")})
    )]
    #[case::redis_url_bare_password(
        json!({"redisAddress": "rediss://s3@redis:6379"}),
        json!({"redisAddress": format!("rediss://{REDACTED}@redis:6379")})
    )]
    #[case::redis_url_without_password(
        json!({"redisAddress": "redis://redis:6379"}),
        json!({"redisAddress": "redis://redis:6379"})
    )]
    #[case::env_redis_address(
        json!([{"name": "RAY_REDIS_ADDRESS", "value": ":s3@redis:6379"}]),
        json!([{"name": "RAY_REDIS_ADDRESS", "value": format!(":{REDACTED}@redis:6379")}])
    )]
    #[case::env_password(
        json!([{"name": "REDIS_PASSWORD", "value": "s3"}, {"name": "RAY_PORT", "value": "6379"}]),
        json!([{"name": "REDIS_PASSWORD", "value": REDACTED}, {"name": "RAY_PORT", "value": "6379"}])
    )]
    #[case::env_token_any_case(
        json!([{"name": "hf_token", "value": "s3"}, {"name": "MY_SECRET_KEY", "value": "s3"}]),
        json!([{"name": "hf_token", "value": REDACTED}, {"name": "MY_SECRET_KEY", "value": REDACTED}])
    )]
    #[case::env_redis_username(
        json!([{"name": "REDIS_USERNAME", "value": "admin"}]),
        json!([{"name": "REDIS_USERNAME", "value": REDACTED}])
    )]
    #[case::env_from_secret(
        json!([{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "r", "key": "k"}}}]),
        json!([{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "r", "key": "k"}}}])
    )]
    #[case::secret_data(
        json!({"kind": "Secret", "data": {"password": "czM="}, "stringData": {"token": "s3"}, "type": "Opaque"}),
        json!({"kind": "Secret", "data": {"password": REDACTED}, "stringData": {"token": REDACTED}, "type": "Opaque"})
    )]
    #[case::config_map_data_is_no_secret(
        json!({"kind": "ConfigMap", "data": {"password-policy": "strict"}}),
        json!({"kind": "ConfigMap", "data": {"password-policy": "strict"}})
    )]
    #[case::command_line_flag(
        json!({"args": ["ulimit -n 65536; ray start --head --redis-password=s3 --num-cpus=1"]}),
        json!({"args": [format!("ulimit -n 65536; ray start --head --redis-password={REDACTED} --num-cpus=1")]})
    )]
    #[case::command_line_flag_with_space(
        json!("ray start --redis-username admin --block"),
        json!(format!("ray start --redis-username {REDACTED} --block"))
    )]
    #[case::command_line_env_reference(
        json!("ray start --redis-password=$REDIS_PASSWORD --redis-username=$REDIS_USERNAME"),
        json!("ray start --redis-password=$REDIS_PASSWORD --redis-username=$REDIS_USERNAME")
    )]
    fn secrets_are_replaced_and_nothing_else(#[case] mut value: Value, #[case] expected: Value) {
        let original = value.clone();
        let changed = redact_value(&mut value);
        assert_eq!(value, expected);
        assert_eq!(changed, original != expected);
    }

    #[test]
    fn redaction_is_idempotent() {
        let mut value = json!({"redisAddress": "redis://u:s3@h", "env": [{"name": "A_TOKEN", "value": "t"}]});
        assert!(redact_value(&mut value));
        let once = value.clone();
        assert!(!redact_value(&mut value), "a redacted document has nothing left to redact");
        assert_eq!(value, once);
    }

    #[test]
    fn a_part_without_secrets_keeps_its_bytes() {
        let part = Part { name: "pods/000000".into(), json: br#"{"name":"c-head","phase":"Running"}"#.to_vec() };
        assert!(matches!(redact_part(&part).unwrap(), Cow::Borrowed(_)));
        let flagged = Part { name: "x".into(), json: br#"{"redisPassword":{"value":"s3"}}"#.to_vec() };
        assert_eq!(redact_part(&flagged).unwrap().json, br#"{"redisPassword":{"value":"<redacted>"}}"#);
    }

    #[rstest]
    #[case::env_dump("REDIS_PASSWORD=s3 RAY_PORT=6379", "REDIS_PASSWORD=<redacted> RAY_PORT=6379")]
    #[case::any_case_and_quoted("hf_token=\"a b\", db_secret='c'", "hf_token=\"<redacted>\", db_secret='<redacted>'")]
    #[case::url_query("GET /data?token=abc&page=2", "GET /data?token=<redacted>&page=2")]
    #[case::flag_with_equals("ray start --redis-password=s3 --block", "ray start --redis-password=<redacted> --block")]
    #[case::flag_with_space("ray start --redis-username admin", "ray start --redis-username <redacted>")]
    #[case::redis_url(
        "connecting to redis://admin:s3@redis:6379/0 ...",
        "connecting to redis://admin:<redacted>@redis:6379/0 ..."
    )]
    #[case::rediss_url_bare_password("url='rediss://s3@redis:6379'", "url='rediss://<redacted>@redis:6379'")]
    #[case::two_urls("REDIS://:a@x redis://:b@y", "REDIS://:<redacted>@x redis://:<redacted>@y")]
    #[case::reference("export TOKEN=$HF_TOKEN", "export TOKEN=$HF_TOKEN")]
    #[case::comparison("if TOKEN==expected", "if TOKEN==expected")]
    #[case::not_a_secret_name("PATH=/usr/bin tokens: 3", "PATH=/usr/bin tokens: 3")]
    #[case::redis_without_password("redis://redis:6379 is up", "redis://redis:6379 is up")]
    #[case::non_ascii_before_the_name("→PASSWORD=s3", "→PASSWORD=<redacted>")]
    fn log_lines_lose_their_secrets(#[case] line: &str, #[case] expected: &str) {
        let redacted = redact_log_line(line);
        assert_eq!(redacted, expected);
        assert_eq!(matches!(redacted, Cow::Borrowed(_)), line == expected, "borrowed exactly when unchanged");
        assert_eq!(redact_log_line(expected), expected, "idempotent");
    }

    #[test]
    fn escaped_keys_do_not_slip_through() {
        let json = br#"{"redisP\u0061ssword":{"value":"s3"}}"#;
        assert_eq!(redact_json(json).unwrap().as_ref(), br#"{"redisPassword":{"value":"<redacted>"}}"#);
    }
}
