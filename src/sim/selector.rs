//! Label selectors (`a=b,c!=d,e in (f,g),h notin (i),j,!k`) and field selectors (`metadata.name=x`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::error::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Operator {
    Exists,
    DoesNotExist,
    Equals(String),
    NotEquals(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    GreaterThan(i64),
    LessThan(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
}

impl Requirement {
    fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let value = labels.and_then(|l| l.get(&self.key)).and_then(Value::as_str);
        match (&self.operator, value) {
            (Operator::Exists, value) => value.is_some(),
            (Operator::DoesNotExist, value) => value.is_none(),
            (Operator::Equals(wanted), value) => value == Some(wanted.as_str()),
            (Operator::NotEquals(unwanted), value) => value != Some(unwanted.as_str()),
            (Operator::In(set), value) => value.is_some_and(|v| set.contains(v)),
            (Operator::NotIn(set), value) => value.is_none_or(|v| !set.contains(v)),
            (Operator::GreaterThan(bound), value) => {
                value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *bound)
            }
            (Operator::LessThan(bound), value) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *bound),
        }
    }
}

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, ApiError> {
        let requirements = split_top_level(text)
            .into_iter()
            .map(str::trim)
            .filter(|term| !term.is_empty())
            .map(parse_requirement)
            .collect::<Result<_, _>>()
            .map_err(|why| ApiError::bad_request(format!("unable to parse requirement: {why}")))?;
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The selector of a Service (or a `matchLabels`): every label equal.
    pub fn from_labels(labels: &serde_json::Map<String, Value>) -> LabelSelector {
        let requirements = labels
            .iter()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                operator: Operator::Equals(value.as_str().unwrap_or_default().to_string()),
            })
            .collect();
        LabelSelector { requirements }
    }

    pub fn matches(&self, object: &Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let labels = object.get("metadata").and_then(|m| m.get("labels")).and_then(Value::as_object);
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// Splits at commas outside parentheses: `a in (x,y),b` is two terms.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/')
}

fn parse_requirement(term: &str) -> Result<Requirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        return check_key(key).map(|key| Requirement { key, operator: Operator::DoesNotExist });
    }
    let key_end = term.find(|c: char| !is_key_char(c)).unwrap_or(term.len());
    let key = check_key(&term[..key_end])?;
    let rest = term[key_end..].trim_start();
    let operator = if rest.is_empty() {
        Operator::Exists
    } else if let Some(value) = rest.strip_prefix("!=") {
        Operator::NotEquals(check_value(value)?)
    } else if let Some(value) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        Operator::Equals(check_value(value)?)
    } else if let Some(value) = rest.strip_prefix('>') {
        Operator::GreaterThan(
            value
                .trim()
                .parse()
                .map_err(|_| format!("{term}: for 'gt', 'lt' operators, the value must be an integer"))?,
        )
    } else if let Some(value) = rest.strip_prefix('<') {
        Operator::LessThan(
            value
                .trim()
                .parse()
                .map_err(|_| format!("{term}: for 'gt', 'lt' operators, the value must be an integer"))?,
        )
    } else if let Some(set) = rest.strip_prefix("notin") {
        Operator::NotIn(parse_set(set, term)?)
    } else if let Some(set) = rest.strip_prefix("in") {
        Operator::In(parse_set(set, term)?)
    } else {
        return Err(format!("{term}: found '{rest}', expected: in, notin, =, ==, !=, gt, lt"));
    };
    Ok(Requirement { key, operator })
}

fn check_key(key: &str) -> Result<String, String> {
    if key.is_empty() || !key.chars().all(is_key_char) {
        Err(format!("invalid label key \"{key}\""))
    } else {
        Ok(key.to_string())
    }
}

fn check_value(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
        Ok(value.to_string())
    } else {
        Err(format!("invalid label value: \"{value}\""))
    }
}

fn parse_set(text: &str, term: &str) -> Result<BTreeSet<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("{term}: found '{}', expected: '('", text.trim()))?;
    inner.split(',').map(check_value).collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldRequirement {
    field: String,
    value: String,
    equal: bool,
}

/// A parsed `fieldSelector`, limited to the fields the resource supports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Each field must be `metadata.name`, `metadata.namespace` or one of `supported`.
    pub fn parse(text: &str, supported: &[String]) -> Result<FieldSelector, ApiError> {
        let mut requirements = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, equal) = if let Some((field, value)) = term.split_once("!=") {
                (field, value, false)
            } else if let Some((field, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (field, value, true)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{text}'; can't understand '{term}'")));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace") && !supported.iter().any(|s| s == field) {
                return Err(ApiError::bad_request(format!("field label not supported: {field}")));
            }
            requirements.push(FieldRequirement { field: field.to_string(), value: value.trim().to_string(), equal });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| (field_value(object, &r.field) == r.value) == r.equal)
    }
}

/// A field as field selectors see it: strings as they are, booleans and numbers as text, absent as empty.
fn field_value(object: &Value, field: &str) -> String {
    let pointer = format!("/{}", field.replace('.', "/"));
    match object.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn labelled(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "labels": labels}})
    }

    #[rstest]
    #[case::equals("app=ray", true)]
    #[case::double_equals("app==ray", true)]
    #[case::equals_other("app=web", false)]
    #[case::not_equals("app!=web", true)]
    #[case::not_equals_missing_key("tier!=x", true)]
    #[case::exists("app", true)]
    #[case::exists_missing("tier", false)]
    #[case::does_not_exist("!tier", true)]
    #[case::does_not_exist_present("!app", false)]
    #[case::in_set("app in (web, ray)", true)]
    #[case::in_set_no_space("app in(web,ray)", true)]
    #[case::in_set_missing_key("tier in (a)", false)]
    #[case::notin_set("app notin (web,db)", true)]
    #[case::notin_set_member("app notin (ray)", false)]
    #[case::notin_missing_key("tier notin (a)", true)]
    #[case::greater_than("replicas>2", true)]
    #[case::less_than("replicas<2", false)]
    #[case::all_terms("app=ray,node-type in (head,worker),!tier", true)]
    #[case::one_term_fails("app=ray,node-type=worker", false)]
    #[case::prefixed_key("ray.io/cluster=c1", true)]
    #[case::empty("", true)]
    fn label_selectors_match_as_the_api_server_does(#[case] selector: &str, #[case] matches: bool) {
        let object = labelled(json!({"app": "ray", "node-type": "head", "replicas": "3", "ray.io/cluster": "c1"}));
        assert_eq!(LabelSelector::parse(selector).unwrap().matches(&object), matches);
    }

    #[rstest]
    #[case::unclosed_set("app in (a")]
    #[case::bad_operator("app ~ b")]
    #[case::bad_value("app=a b")]
    #[case::not_a_number("n>x")]
    fn malformed_label_selectors_are_bad_requests(#[case] selector: &str) {
        let error = LabelSelector::parse(selector).unwrap_err();
        assert_eq!(error.code, 400);
        assert!(error.message.starts_with("unable to parse requirement: "), "{}", error.message);
    }

    #[rstest]
    #[case::name("metadata.name=p", true)]
    #[case::name_other("metadata.name=q", false)]
    #[case::name_not("metadata.name!=q", true)]
    #[case::namespace("metadata.namespace=ns", true)]
    #[case::supported_field("status.phase=Running", true)]
    #[case::absent_field_is_empty("spec.nodeName=", true)]
    fn field_selectors_read_the_named_field(#[case] selector: &str, #[case] matches: bool) {
        let object = json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Running"}});
        let supported = vec!["status.phase".to_string(), "spec.nodeName".to_string()];
        assert_eq!(FieldSelector::parse(selector, &supported).unwrap().matches(&object), matches);
    }

    #[test]
    fn unsupported_fields_are_rejected() {
        let error = FieldSelector::parse("spec.replicas=3", &[]).unwrap_err();
        assert_eq!((error.code, error.message.as_str()), (400, "field label not supported: spec.replicas"));
    }
}
