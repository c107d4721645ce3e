//! Kubernetes label selectors, compiled once (so bad operators are config errors, not silent
//! non-matches) and then matched against label maps.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::LabelSelector;

/// Labels of an object, as Kubernetes stores them.
pub type Labels = BTreeMap<String, String>;

/// A compiled label selector. The empty selector matches every object, as in Kubernetes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Operator,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Operator {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

/// Why a label selector is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The operator is not In, NotIn, Exists or DoesNotExist.
    #[error(
        "matchExpressions[{index}]: unknown operator {operator:?} (want In, NotIn, Exists or DoesNotExist)"
    )]
    UnknownOperator {
        /// Position in matchExpressions.
        index: usize,
        /// What was given.
        operator: String,
    },
    /// In and NotIn need at least one value.
    #[error("matchExpressions[{index}]: operator {operator} needs at least one value")]
    MissingValues {
        /// Position in matchExpressions.
        index: usize,
        /// In or NotIn.
        operator: String,
    },
    /// Exists and DoesNotExist take no values.
    #[error("matchExpressions[{index}]: operator {operator} takes no values")]
    UnexpectedValues {
        /// Position in matchExpressions.
        index: usize,
        /// Exists or DoesNotExist.
        operator: String,
    },
    /// A label key is empty.
    #[error("empty label key")]
    EmptyKey,
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Compiles a Kubernetes label selector.
    pub fn compile(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            if key.is_empty() {
                return Err(SelectorError::EmptyKey);
            }
            requirements.push(Requirement {
                key: key.clone(),
                op: Operator::In(BTreeSet::from([value.clone()])),
            });
        }
        for (index, expr) in selector.match_expressions.iter().flatten().enumerate() {
            if expr.key.is_empty() {
                return Err(SelectorError::EmptyKey);
            }
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            let op = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError::MissingValues {
                        index,
                        operator: expr.operator.clone(),
                    });
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError::UnexpectedValues {
                        index,
                        operator: expr.operator.clone(),
                    });
                }
                "In" => Operator::In(values),
                "NotIn" => Operator::NotIn(values),
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::UnknownOperator {
                        index,
                        operator: other.to_string(),
                    });
                }
            };
            requirements.push(Requirement {
                key: expr.key.clone(),
                op,
            });
        }
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.get(&r.key);
            match &r.op {
                Operator::In(values) => value.is_some_and(|v| values.contains(v)),
                Operator::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
                Operator::Exists => value.is_some(),
                Operator::DoesNotExist => value.is_none(),
            }
        })
    }

    /// Whether this selector matches every object.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// MetalLB's rule for selector lists: an empty list matches everything, otherwise any one selector must match.
pub fn any_matches(selectors: &[Selector], labels: &Labels) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_labels: None,
        }
    }

    #[test]
    fn operators_match_like_kubernetes() {
        let env_prod = labels(&[("env", "prod")]);
        let none = labels(&[]);
        let cases = [
            (expr("env", "In", &["prod", "dev"]), true, false),
            (expr("env", "NotIn", &["dev"]), true, true),
            (expr("env", "NotIn", &["prod"]), false, true),
            (expr("env", "Exists", &[]), true, false),
            (expr("env", "DoesNotExist", &[]), false, true),
        ];
        for (sel, on_prod, on_none) in cases {
            let s = Selector::compile(&sel).unwrap();
            assert_eq!(s.matches(&env_prod), on_prod, "{sel:?} on env=prod");
            assert_eq!(s.matches(&none), on_none, "{sel:?} on no labels");
        }
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let mut sel = expr("tier", "Exists", &[]);
        sel.match_labels = Some(BTreeMap::from([("env".into(), "prod".into())]));
        let s = Selector::compile(&sel).unwrap();
        assert!(s.matches(&labels(&[("env", "prod"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
        assert!(!s.matches(&labels(&[("env", "dev"), ("tier", "web")])));
    }

    #[test]
    fn malformed_selectors_are_refused() {
        assert!(matches!(
            Selector::compile(&expr("a", "Equals", &["x"])),
            Err(SelectorError::UnknownOperator { .. })
        ));
        assert!(matches!(
            Selector::compile(&expr("a", "In", &[])),
            Err(SelectorError::MissingValues { .. })
        ));
        assert!(matches!(
            Selector::compile(&expr("a", "Exists", &["x"])),
            Err(SelectorError::UnexpectedValues { .. })
        ));
        assert!(matches!(
            Selector::compile(&expr("", "Exists", &[])),
            Err(SelectorError::EmptyKey)
        ));
    }

    #[test]
    fn empty_list_matches_everything_but_a_list_needs_one_match() {
        let prod = Selector::compile(&expr("env", "In", &["prod"])).unwrap();
        assert!(any_matches(&[], &labels(&[])));
        assert!(!any_matches(std::slice::from_ref(&prod), &labels(&[])));
        assert!(any_matches(&[prod], &labels(&[("env", "prod")])));
    }
}
