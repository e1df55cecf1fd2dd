//! Machine definitions (`state-machines/*.yaml`): states, inputs, guards and transitions, each transition with the
//! reason a Decision gives for it and the commands it may issue. The files are compiled into the binary.
//!
//! The code cannot drift from them: each machine exposes its transition table as data and a test holds it equal to
//! its file; the fixture runner checks that every Decision is a listed transition issuing only listed commands; and
//! a test fails while a transition is exercised by no fixture. `kuberay fsm show` renders a definition as a Mermaid
//! diagram, a Graphviz graph or a text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::MachineKind;

/// `to: same`: the transition leaves the object in the state it came from.
pub const SAME: &str = "same";

/// Every definition the binary carries, by machine name.
const SOURCES: [(&str, &str); 2] = [
    ("raycluster", include_str!("../../state-machines/raycluster.yaml")),
    ("rayjob", include_str!("../../state-machines/rayjob.yaml")),
];

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub name: String,
    pub description: String,
    /// The state of an object the engine has no memory of.
    pub initial: String,
    /// States after which the object is gone.
    pub terminal: Vec<String>,
    pub states: Vec<Item>,
    /// What wakes the machine (the kinds of `Trigger`).
    pub inputs: Vec<Item>,
    /// The conditions under which transitions fire, named so that transitions can refer to them.
    pub guards: Vec<Item>,
    pub transitions: Vec<Transition>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub name: String,
    pub description: String,
}

/// One rule: from any of `from`, when `guard` holds, to `to` (or back to the same state), with `reason`, issuing
/// only commands whose summaries (`Command::summary`) are or start with one of `commands`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    pub from: Vec<String>,
    pub to: String,
    pub guard: String,
    pub reason: String,
    pub commands: Vec<String>,
}

impl Transition {
    /// The state this transition leads to from `from`.
    pub fn target<'a>(&'a self, from: &'a str) -> &'a str {
        if self.to == SAME { from } else { &self.to }
    }

    pub fn allows(&self, from: &str, to: &str, reason: &str) -> bool {
        self.reason == reason && self.from.iter().any(|state| state == from) && self.target(from) == to
    }

    /// Whether a command with this summary may be issued: `event Normal CreatedService` allows exactly that event;
    /// `create Pod` allows any Pod create.
    pub fn allows_command(&self, summary: &str) -> bool {
        self.commands.iter().any(|allowed| {
            summary.strip_prefix(allowed.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FsmError {
    #[error("unknown machine {name:?} (known: {known})")]
    Unknown { name: String, known: String },
    #[error("state-machines/{name}.yaml: {message}")]
    Parse { name: String, message: String },
}

/// The names of the machines the binary carries.
/// Where a rule leads: a state, or where the object was.
pub enum To<S> {
    State(S),
    Same,
}

/// A transition as a machine's code writes it, in its own State and Reason enums; [`table`] turns its rules into
/// the definition's terms, which a test holds equal to `state-machines/<machine>.yaml`.
pub struct Rule<S: 'static, R> {
    pub from: &'static [S],
    pub to: To<S>,
    pub guard: &'static str,
    pub reason: R,
    pub commands: &'static [&'static str],
}

/// A state or a reason, as the definition spells it.
pub trait Named: Copy {
    fn spelled(self) -> &'static str;
}

/// Implements [`Named`] for a machine's State and Reason enums by their `name()`.
macro_rules! named_by_name {
    ($($name:ty),*) => {
        $(impl $crate::machine::fsm::Named for $name {
            fn spelled(self) -> &'static str {
                self.name()
            }
        })*
    };
}
pub(crate) use named_by_name;

pub fn table<S: Named, R: Named>(rules: &[Rule<S, R>]) -> Vec<Transition> {
    rules
        .iter()
        .map(|rule| Transition {
            from: rule.from.iter().map(|state| state.spelled().to_string()).collect(),
            to: match rule.to {
                To::State(state) => state.spelled().to_string(),
                To::Same => SAME.to_string(),
            },
            guard: rule.guard.to_string(),
            reason: rule.reason.spelled().to_string(),
            commands: rule.commands.iter().map(|command| command.to_string()).collect(),
        })
        .collect()
}

pub fn names() -> Vec<&'static str> {
    SOURCES.iter().map(|(name, _)| *name).collect()
}

pub fn definition(name: &str) -> Result<Definition, FsmError> {
    let (_, text) = SOURCES
        .iter()
        .find(|(known, _)| *known == name)
        .ok_or_else(|| FsmError::Unknown { name: name.to_string(), known: names().join(", ") })?;
    serde_saphyr::from_str(text).map_err(|e| FsmError::Parse { name: name.to_string(), message: e.to_string() })
}

pub fn definition_of(kind: MachineKind) -> Result<Definition, FsmError> {
    definition(kind.cli_name())
}

impl Definition {
    /// The index of the transition that allows this step, if any.
    pub fn transition(&self, from: &str, to: &str, reason: &str) -> Option<usize> {
        self.transitions.iter().position(|transition| transition.allows(from, to, reason))
    }

    /// What is inconsistent in the definition itself: unknown states or guards, a transition listed twice.
    pub fn problems(&self) -> Vec<String> {
        let states: Vec<&str> = self.states.iter().map(|state| state.name.as_str()).collect();
        let guards: Vec<&str> = self.guards.iter().map(|guard| guard.name.as_str()).collect();
        let mut problems = Vec::new();
        let check_state = |state: &str, problems: &mut Vec<String>, place: &str| {
            if !states.contains(&state) {
                problems.push(format!("{place}: unknown state {state}"));
            }
        };
        check_state(&self.initial, &mut problems, "initial");
        self.terminal.iter().for_each(|state| check_state(state, &mut problems, "terminal"));
        let mut seen = BTreeMap::new();
        for (index, transition) in self.transitions.iter().enumerate() {
            let place = format!("transition {} ({})", index + 1, transition.reason);
            transition.from.iter().for_each(|state| check_state(state, &mut problems, &place));
            if transition.to != SAME {
                check_state(&transition.to, &mut problems, &place);
            }
            if !guards.contains(&transition.guard.as_str()) {
                problems.push(format!("{place}: unknown guard {}", transition.guard));
            }
            for from in &transition.from {
                let key = (from.clone(), transition.target(from).to_string(), transition.reason.clone());
                if let Some(first) = seen.insert(key, index) {
                    problems.push(format!("{place}: {from} is already covered by transition {}", first + 1));
                }
            }
        }
        problems
    }

    /// Every edge `(from, to)` with its reasons, in the order the definition lists them.
    fn edges(&self) -> Vec<((&str, &str), Vec<&str>)> {
        let mut edges: Vec<((&str, &str), Vec<&str>)> = Vec::new();
        for transition in &self.transitions {
            for from in &transition.from {
                let edge = (from.as_str(), transition.target(from));
                match edges.iter_mut().find(|(known, _)| *known == edge) {
                    Some((_, reasons)) if !reasons.contains(&transition.reason.as_str()) => {
                        reasons.push(&transition.reason)
                    }
                    Some(_) => {}
                    None => edges.push((edge, vec![&transition.reason])),
                }
            }
        }
        edges
    }

    /// A Mermaid `stateDiagram-v2`: one arrow per pair of states, labelled with every reason between them.
    pub fn mermaid(&self) -> String {
        let mut out = String::from("stateDiagram-v2\n");
        let _ = writeln!(out, "    [*] --> {}", self.initial);
        for ((from, to), reasons) in self.edges() {
            let _ = writeln!(out, "    {from} --> {to} : {}", reasons.join(", "));
        }
        for state in &self.terminal {
            let _ = writeln!(out, "    {state} --> [*]");
        }
        out
    }

    /// A Graphviz digraph.
    pub fn dot(&self) -> String {
        let mut out = format!("digraph {} {{\n    rankdir=LR;\n    node [shape=box, style=rounded];\n", self.name);
        let _ = writeln!(out, "    start [shape=point];\n    start -> \"{}\";", self.initial);
        for ((from, to), reasons) in self.edges() {
            let _ = writeln!(out, "    \"{from}\" -> \"{to}\" [label=\"{}\"];", reasons.join("\\n"));
        }
        out.push_str("}\n");
        out
    }

    /// One line per transition, in columns: FROM, TO, GUARD, REASON, COMMANDS.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 5]> =
            std::iter::once(["FROM", "TO", "GUARD", "REASON", "COMMANDS"].map(String::from))
                .chain(self.transitions.iter().map(|t| {
                    [t.from.join(","), t.to.clone(), t.guard.clone(), t.reason.clone(), t.commands.join(", ")]
                }))
                .collect();
        let widths: Vec<usize> =
            (0..4).map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (column, width) in widths.iter().enumerate() {
                let _ = write!(line, "{:width$}  ", row[column]);
            }
            line.push_str(&row[4]);
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn tiny() -> Definition {
        let transition = |from: &[&str], to: &str, reason: &str, commands: &[&str]| Transition {
            from: from.iter().map(|s| s.to_string()).collect(),
            to: to.to_string(),
            guard: "g".to_string(),
            reason: reason.to_string(),
            commands: commands.iter().map(|s| s.to_string()).collect(),
        };
        let item = |name: &str| Item { name: name.to_string(), description: String::new() };
        Definition {
            name: "tiny".to_string(),
            description: String::new(),
            initial: "A".to_string(),
            terminal: vec!["C".to_string()],
            states: vec![item("A"), item("B"), item("C")],
            inputs: vec![item("watch")],
            guards: vec![item("g")],
            transitions: vec![
                transition(&["A"], "B", "Go", &["create Pod", "event Normal Created"]),
                transition(&["A", "B"], SAME, "Stay", &[]),
                transition(&["B"], "C", "End", &[]),
                transition(&["A"], "B", "Jump", &[]),
            ],
        }
    }

    #[rstest]
    #[case::listed("A", "B", "Go", Some(0))]
    #[case::same_from_either("B", "B", "Stay", Some(1))]
    #[case::same_is_not_another_state("A", "B", "Stay", None)]
    #[case::unlisted_from("B", "B", "Go", None)]
    fn transitions_are_found_by_from_to_and_reason(
        #[case] from: &str,
        #[case] to: &str,
        #[case] reason: &str,
        #[case] index: Option<usize>,
    ) {
        assert_eq!(tiny().transition(from, to, reason), index);
    }

    #[rstest]
    #[case::prefix_at_a_word("create Pod c-head-", true)]
    #[case::exact_event("event Normal Created", true)]
    #[case::longer_event_name("event Normal CreatedService", false)]
    #[case::other_kind("create Service c-head-svc", false)]
    fn commands_are_allowed_by_whole_words(#[case] summary: &str, #[case] allowed: bool) {
        assert_eq!(tiny().transitions[0].allows_command(summary), allowed);
    }

    #[test]
    fn mermaid_merges_reasons_of_one_edge() {
        assert_eq!(
            tiny().mermaid(),
            "stateDiagram-v2\n    [*] --> A\n    A --> B : Go, Jump\n    A --> A : Stay\n    B --> B : Stay\n    \
             B --> C : End\n    C --> [*]\n"
        );
    }

    #[test]
    fn dot_has_one_edge_per_pair() {
        let dot = tiny().dot();
        assert!(dot.starts_with("digraph tiny {\n"));
        assert!(dot.contains("    \"A\" -> \"B\" [label=\"Go\\nJump\"];\n"), "{dot}");
        assert_eq!(dot.matches(" -> ").count(), 5, "{dot}");
    }

    #[test]
    fn table_aligns_columns() {
        let table = tiny().table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "FROM  TO    GUARD  REASON  COMMANDS");
        assert_eq!(lines[1], "A     B     g      Go      create Pod, event Normal Created");
        assert_eq!(lines[2], "A,B   same  g      Stay");
    }

    #[test]
    fn problems_name_unknown_states_guards_and_duplicates() {
        let mut definition = tiny();
        definition.transitions[2].to = "D".to_string();
        definition.transitions[2].guard = "h".to_string();
        definition.transitions.push(definition.transitions[0].clone());
        assert_eq!(
            definition.problems(),
            vec![
                "transition 3 (End): unknown state D",
                "transition 3 (End): unknown guard h",
                "transition 5 (Go): A is already covered by transition 1",
            ]
        );
    }

    #[test]
    fn every_carried_definition_parses_and_is_consistent() {
        for name in names() {
            let definition = definition(name).unwrap();
            assert_eq!(definition.name, name);
            assert_eq!(definition.problems(), Vec::<String>::new(), "{name}");
        }
    }

    #[test]
    fn unknown_machines_are_named() {
        assert_eq!(
            definition("rayservice"),
            Err(FsmError::Unknown { name: "rayservice".to_string(), known: "raycluster, rayjob".to_string() })
        );
    }

    /// The README shows each machine's diagram between `<!-- fsm:NAME -->` and `<!-- /fsm:NAME -->`.
    #[test]
    fn readme_diagrams_are_the_rendered_ones() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for name in names() {
            let (begin, end) = (format!("<!-- fsm:{name} -->\n"), format!("<!-- /fsm:{name} -->"));
            let start = readme.find(&begin).unwrap_or_else(|| panic!("README has no {begin}")) + begin.len();
            let stop = readme[start..].find(&end).unwrap_or_else(|| panic!("README has no {end}")) + start;
            let expected = format!("```mermaid\n{}```\n", definition(name).unwrap().mermaid());
            assert_eq!(
                &readme[start..stop],
                expected,
                "README's {name} diagram is stale: run `kuberay fsm show {name} --format mermaid`"
            );
        }
    }
}
