//! Label selectors: the Kubernetes string syntax (`a=b,c!=d,e in (x,y),!f`)
//! used by `list`, and the structured `LabelSelector` of manifests
//! (`matchLabels` and `matchExpressions`), both turned into one [`Selector`]
//! that matches a label set. The compiler uses the same type to turn policy
//! selectors into address sets.

use super::names;
use core::fmt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// How one requirement compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`, `key==value`, `matchLabels`.
    Equals,
    /// `key!=value`: also matches when the label is absent.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`: also matches when the label is absent.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>n`: the label's value is an integer greater than n.
    GreaterThan,
    /// `key<n`: the label's value is an integer less than n.
    LessThan,
}

/// One condition on one label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let in_set = || value.is_some_and(|v| self.values.iter().any(|x| x == v));
        match self.operator {
            Operator::Equals | Operator::In => in_set(),
            Operator::NotEquals | Operator::NotIn => !in_set(),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else {
                    return false;
                };
                match (v.parse::<i64>(), bound.parse::<i64>()) {
                    (Ok(v), Ok(bound)) if self.operator == Operator::GreaterThan => v > bound,
                    (Ok(v), Ok(bound)) => v < bound,
                    _ => false,
                }
            }
        }
    }
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

/// A selector that could not be read: where (a path relative to the selector,
/// or the character offset in a selector string) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelectorError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for LabelSelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for LabelSelectorError {}

fn serr(field: impl Into<String>, message: impl Into<String>) -> LabelSelectorError {
    LabelSelectorError {
        field: field.into(),
        message: message.into(),
    }
}

impl Selector {
    /// Matches every label set.
    pub fn everything() -> Selector {
        Selector::default()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Reads a manifest's `LabelSelector`, checking key, value and operator
    /// rules as the Kubernetes API server does. Error paths are relative to
    /// the selector (e.g. `matchExpressions[0].values`).
    pub fn from_label_selector(sel: &LabelSelector) -> Result<Selector, LabelSelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            names::label_key(k).map_err(|m| serr(format!("matchLabels[{k}]"), m))?;
            names::label_value(v).map_err(|m| serr(format!("matchLabels[{k}]"), m))?;
            requirements.push(Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            });
        }
        for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
            let at = |f: &str| format!("matchExpressions[{i}].{f}");
            names::label_key(&e.key).map_err(|m| serr(at("key"), m))?;
            let values = e.values.clone().unwrap_or_default();
            let operator = match e.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(serr(
                        at("operator"),
                        format!("must be one of In, NotIn, Exists, DoesNotExist, got {other:?}"),
                    ))
                }
            };
            match operator {
                Operator::In | Operator::NotIn if values.is_empty() => {
                    return Err(serr(
                        at("values"),
                        format!("must be non-empty when operator is {}", e.operator),
                    ))
                }
                Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                    return Err(serr(
                        at("values"),
                        format!("must be empty when operator is {}", e.operator),
                    ))
                }
                _ => {}
            }
            for (j, v) in values.iter().enumerate() {
                names::label_value(v).map_err(|m| serr(at(&format!("values[{j}]")), m))?;
            }
            requirements.push(Requirement {
                key: e.key.clone(),
                operator,
                values,
            });
        }
        Ok(Selector { requirements })
    }

    /// Reads a selector from a map of labels that must all be equal, as a
    /// Service's `spec.selector` is.
    pub fn from_map(map: &BTreeMap<String, String>) -> Selector {
        Selector {
            requirements: map
                .iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    operator: Operator::Equals,
                    values: vec![v.clone()],
                })
                .collect(),
        }
    }

    /// Parses the Kubernetes selector string syntax: comma-separated
    /// requirements, each one of `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
    /// `k notin (a,b)`, `k`, `!k`, `k>n`, `k<n`. The empty string selects
    /// everything.
    pub fn parse(text: &str) -> Result<Selector, LabelSelectorError> {
        let tokens = lex(text)?;
        let mut p = TokenParser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if p.peek().is_none() {
            return Ok(Selector { requirements });
        }
        loop {
            requirements.push(p.requirement()?);
            match p.next() {
                None => break,
                Some((_, Token::Comma)) => continue,
                Some((at, t)) => {
                    return Err(serr(
                        format!("offset {at}"),
                        format!("expected ',' or the end after a requirement, found {t}"),
                    ))
                }
            }
        }
        Ok(Selector { requirements })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let first = r.values.first().map(String::as_str).unwrap_or("");
            match r.operator {
                Operator::Equals => write!(f, "{}={}", r.key, first)?,
                Operator::NotEquals => write!(f, "{}!={}", r.key, first)?,
                Operator::In => write!(f, "{} in ({})", r.key, r.values.join(","))?,
                Operator::NotIn => write!(f, "{} notin ({})", r.key, r.values.join(","))?,
                Operator::Exists => write!(f, "{}", r.key)?,
                Operator::DoesNotExist => write!(f, "!{}", r.key)?,
                Operator::GreaterThan => write!(f, "{}>{}", r.key, first)?,
                Operator::LessThan => write!(f, "{}<{}", r.key, first)?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "{w:?}"),
            Token::Not => f.write_str("'!'"),
            Token::Eq => f.write_str("'='"),
            Token::DoubleEq => f.write_str("'=='"),
            Token::NotEq => f.write_str("'!='"),
            Token::Gt => f.write_str("'>'"),
            Token::Lt => f.write_str("'<'"),
            Token::Open => f.write_str("'('"),
            Token::Close => f.write_str("')'"),
            Token::Comma => f.write_str("','"),
        }
    }
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, LabelSelectorError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let two = |d: u8| b.get(i + 1) == Some(&d);
        let (tok, len) = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'!' if two(b'=') => (Token::NotEq, 2),
            b'!' => (Token::Not, 1),
            b'=' if two(b'=') => (Token::DoubleEq, 2),
            b'=' => (Token::Eq, 1),
            b'>' => (Token::Gt, 1),
            b'<' => (Token::Lt, 1),
            b'(' => (Token::Open, 1),
            b')' => (Token::Close, 1),
            b',' => (Token::Comma, 1),
            _ => {
                let start = i;
                while i < b.len() && !b" \t\n\r!=><(),".contains(&b[i]) {
                    i += 1;
                }
                out.push((start, Token::Word(text[start..i].to_string())));
                continue;
            }
        };
        out.push((i, tok));
        i += len;
    }
    Ok(out)
}

struct TokenParser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
}

impl TokenParser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<(usize, Token)> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn offset(&self) -> String {
        match self.tokens.get(self.pos) {
            Some((at, _)) => format!("offset {at}"),
            None => "end".to_string(),
        }
    }

    fn key(&mut self) -> Result<String, LabelSelectorError> {
        let at = self.offset();
        match self.next() {
            Some((_, Token::Word(k))) => {
                names::label_key(&k).map_err(|m| serr(at, m))?;
                Ok(k)
            }
            Some((_, t)) => Err(serr(at, format!("expected a label key, found {t}"))),
            None => Err(serr(at, "expected a label key")),
        }
    }

    fn value(&mut self) -> Result<String, LabelSelectorError> {
        let at = self.offset();
        let v = match self.peek() {
            Some(Token::Word(w)) => {
                let w = w.clone();
                self.pos += 1;
                w
            }
            // `k=` (an empty value) is allowed.
            _ => String::new(),
        };
        names::label_value(&v).map_err(|m| serr(at, m))?;
        Ok(v)
    }

    fn requirement(&mut self) -> Result<Requirement, LabelSelectorError> {
        if self.peek() == Some(&Token::Not) {
            self.pos += 1;
            let key = self.key()?;
            return Ok(Requirement {
                key,
                operator: Operator::DoesNotExist,
                values: Vec::new(),
            });
        }
        let key = self.key()?;
        let at = self.offset();
        let operator = match self.peek() {
            None | Some(Token::Comma) => {
                return Ok(Requirement {
                    key,
                    operator: Operator::Exists,
                    values: Vec::new(),
                })
            }
            Some(Token::Eq) | Some(Token::DoubleEq) => Operator::Equals,
            Some(Token::NotEq) => Operator::NotEquals,
            Some(Token::Gt) => Operator::GreaterThan,
            Some(Token::Lt) => Operator::LessThan,
            Some(Token::Word(w)) if w == "in" => Operator::In,
            Some(Token::Word(w)) if w == "notin" => Operator::NotIn,
            Some(t) => {
                return Err(serr(
                    at,
                    format!("expected an operator (=, ==, !=, in, notin, >, <), found {t}"),
                ))
            }
        };
        self.pos += 1;
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            Operator::GreaterThan | Operator::LessThan => {
                let at = self.offset();
                let v = self.value()?;
                if v.parse::<i64>().is_err() {
                    return Err(serr(at, format!("expected an integer, found {v:?}")));
                }
                vec![v]
            }
            _ => vec![self.value()?],
        };
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    fn value_set(&mut self) -> Result<Vec<String>, LabelSelectorError> {
        let at = self.offset();
        if self.next().map(|(_, t)| t) != Some(Token::Open) {
            return Err(serr(at, "expected '(' to open a set of values"));
        }
        let mut values = Vec::new();
        loop {
            values.push(self.value()?);
            let at = self.offset();
            match self.next() {
                Some((_, Token::Comma)) => continue,
                Some((_, Token::Close)) => break,
                Some((_, t)) => {
                    return Err(serr(at, format!("expected ',' or ')' in a set, found {t}")))
                }
                None => return Err(serr(at, "expected ')' to close the set")),
            }
        }
        if values.len() == 1 && values[0].is_empty() {
            return Err(serr(at, "a set of values must not be empty"));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let s = Selector::parse("a=b, c==d,e!=f,g in (x, y),h notin (z),i,!j,k>5,l<10").unwrap();
        let ops: Vec<Operator> = s.requirements.iter().map(|r| r.operator).collect();
        assert_eq!(
            ops,
            vec![
                Operator::Equals,
                Operator::Equals,
                Operator::NotEquals,
                Operator::In,
                Operator::NotIn,
                Operator::Exists,
                Operator::DoesNotExist,
                Operator::GreaterThan,
                Operator::LessThan,
            ]
        );
        assert_eq!(s.requirements[3].values, vec!["x", "y"]);
        assert_eq!(
            s.to_string(),
            "a=b,c=d,e!=f,g in (x,y),h notin (z),i,!j,k>5,l<10"
        );
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn matching() {
        let pod = labels(&[("app", "web"), ("tier", "front"), ("gen", "7")]);
        let m = |s: &str| Selector::parse(s).unwrap().matches(&pod);
        assert!(m(""));
        assert!(m("app=web"));
        assert!(!m("app=db"));
        assert!(m("app!=db"));
        assert!(m("missing!=x"));
        assert!(m("tier in (front,back)"));
        assert!(!m("tier notin (front)"));
        assert!(m("missing notin (front)"));
        assert!(m("app,!missing"));
        assert!(!m("!app"));
        assert!(m("gen>6,gen<8"));
        assert!(!m("app>1"));
        assert!(!m("app=web,tier=back"));
        assert!(m("app=web,tier=front"));
        assert!(m("empty!=x"));
        assert!(Selector::parse("v=")
            .unwrap()
            .matches(&labels(&[("v", "")])));
    }

    #[test]
    fn refuses_bad_syntax() {
        for bad in [
            "a in x",
            "a in (x",
            "a in ()",
            "=b",
            "a=b c",
            "a=b,",
            "Bad Key=1",
            "a=has@at",
            "a>x",
            "a b",
            "/x=1",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let e = Selector::parse("app=web,ti er=x").unwrap_err();
        assert!(e.field.starts_with("offset"), "{e}");
    }

    #[test]
    fn structured_selector_rules() {
        let ok = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["front".into()]),
            }]),
        };
        let s = Selector::from_label_selector(&ok).unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!s.matches(&labels(&[("app", "web")])));

        let expr = |op: &str, values: Option<Vec<&str>>| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: op.into(),
                values: values.map(|v| v.into_iter().map(String::from).collect()),
            }]),
        };
        let field = |s: LabelSelector| Selector::from_label_selector(&s).unwrap_err().field;
        assert_eq!(field(expr("In", None)), "matchExpressions[0].values");
        assert_eq!(
            field(expr("Exists", Some(vec!["x"]))),
            "matchExpressions[0].values"
        );
        assert_eq!(field(expr("Equals", None)), "matchExpressions[0].operator");
        assert_eq!(
            field(expr("In", Some(vec!["bad value"]))),
            "matchExpressions[0].values[0]"
        );
        assert!(Selector::from_label_selector(&expr("DoesNotExist", Some(vec![]))).is_ok());
        let bad_key = LabelSelector {
            match_labels: Some(labels(&[("bad key", "x")])),
            match_expressions: None,
        };
        assert_eq!(field(bad_key), "matchLabels[bad key]");
    }
}
