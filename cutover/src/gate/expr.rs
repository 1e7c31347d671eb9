//! The alert expressions the gate evaluates itself: comparisons of
//! recorded SLIs with a threshold, joined by `and`, `or`, `unless`
//! (`orchestrator:availability:ratio_rate5m < 0.999`,
//! `x{route!="/v1/sms/bulk"} > 0.1 or x{route="/v1/sms/bulk"} > 1`).
//!
//! Why not send the alert expression to Prometheus: its recorded series
//! are fixed 5-minute rates, and the gate judges a window of its own
//! choosing. So the gate queries each recording rule's expression with the
//! window put in (see [`super::rules::rewindow`]), and applies the
//! alert's selectors, comparisons and set operators to those results with
//! PromQL's semantics. An expression outside this small grammar is an
//! error, never a pass.

use std::collections::BTreeMap;

use crate::error::CutoverError;

/// A label set (without `__name__`).
pub type Labels = BTreeMap<String, String>;

/// An instant vector.
pub type Vector = Vec<(Labels, f64)>;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Selector {
        name: String,
        matchers: Vec<Matcher>,
    },
    Compare {
        left: Box<Expr>,
        op: CmpOp,
        value: f64,
    },
    Set {
        left: Box<Expr>,
        op: SetOp,
        right: Box<Expr>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    And,
    Or,
    Unless,
}

impl Expr {
    /// The series names this expression reads.
    pub fn names(&self) -> Vec<String> {
        match self {
            Expr::Selector { name, .. } => vec![name.clone()],
            Expr::Compare { left, .. } => left.names(),
            Expr::Set { left, right, .. } => {
                let mut n = left.names();
                n.extend(right.names());
                n.sort();
                n.dedup();
                n
            }
        }
    }

    /// Evaluates with `series` giving each name's vector.
    pub fn eval(&self, series: &BTreeMap<String, Vector>) -> Result<Vector, CutoverError> {
        Ok(match self {
            Expr::Selector { name, matchers } => {
                let v = series
                    .get(name)
                    .ok_or_else(|| CutoverError::Rules(format!("no values for {name}")))?;
                let mut out = Vector::new();
                for (labels, value) in v {
                    if matches_all(labels, matchers)? {
                        out.push((labels.clone(), *value));
                    }
                }
                out
            }
            Expr::Compare { left, op, value } => left
                .eval(series)?
                .into_iter()
                .filter(|(_, v)| op.holds(*v, *value))
                .collect(),
            Expr::Set { left, op, right } => {
                let l = left.eval(series)?;
                let r = right.eval(series)?;
                let in_right = |labels: &Labels| r.iter().any(|(rl, _)| rl == labels);
                match op {
                    SetOp::And => l.into_iter().filter(|(lb, _)| in_right(lb)).collect(),
                    SetOp::Unless => l.into_iter().filter(|(lb, _)| !in_right(lb)).collect(),
                    SetOp::Or => {
                        let mut out = l.clone();
                        for (rl, rv) in r {
                            if !l.iter().any(|(ll, _)| *ll == rl) {
                                out.push((rl, rv));
                            }
                        }
                        out
                    }
                }
            }
        })
    }
}

fn matches_all(labels: &Labels, matchers: &[Matcher]) -> Result<bool, CutoverError> {
    for m in matchers {
        let v = labels.get(&m.label).map(String::as_str).unwrap_or("");
        let ok = match m.op {
            MatchOp::Eq => v == m.value,
            MatchOp::Ne => v != m.value,
            MatchOp::Re | MatchOp::NotRe => {
                let re = regex::Regex::new(&format!("^(?:{})$", m.value))
                    .map_err(|e| CutoverError::Rules(format!("matcher {:?}: {e}", m.value)))?;
                re.is_match(v) == (m.op == MatchOp::Re)
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

impl CmpOp {
    /// PromQL filter semantics: NaN never passes.
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Gt => a > b,
            CmpOp::Lt => a < b,
            CmpOp::Ge => a >= b,
            CmpOp::Le => a <= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b && !a.is_nan(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(f64),
    Op(&'static str),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
}

fn tokens(s: &str) -> Result<Vec<Token>, CutoverError> {
    let err = |m: String| CutoverError::Rules(m);
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let two = s.get(i..i + 2).unwrap_or("");
        let op = ["!=", "=~", "!~", ">=", "<=", "=="]
            .into_iter()
            .find(|o| *o == two);
        if let Some(o) = op {
            out.push(Token::Op(o));
            i += 2;
            continue;
        }
        match c {
            '(' => out.push(Token::LParen),
            ')' => out.push(Token::RParen),
            '{' => out.push(Token::LBrace),
            '}' => out.push(Token::RBrace),
            ',' => out.push(Token::Comma),
            '>' => out.push(Token::Op(">")),
            '<' => out.push(Token::Op("<")),
            '=' => out.push(Token::Op("=")),
            '"' => {
                let mut v = String::new();
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    v.push(b[i] as char);
                    i += 1;
                }
                if i >= b.len() {
                    return Err(err(format!("unterminated string in {s:?}")));
                }
                out.push(Token::Str(v));
            }
            c if c.is_ascii_digit() || c == '.' => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'.'
                        || b[i] == b'+'
                        || b[i] == b'-')
                {
                    if (b[i] == b'+' || b[i] == b'-') && !matches!(b[i - 1], b'e' | b'E') {
                        break;
                    }
                    i += 1;
                }
                let n = &s[start..i];
                out.push(Token::Num(
                    n.parse().map_err(|_| err(format!("bad number {n:?}")))?,
                ));
                continue;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                out.push(Token::Ident(s[start..i].to_owned()));
                continue;
            }
            other => return Err(err(format!("unexpected {other:?} in {s:?}"))),
        }
        i += 1;
    }
    Ok(out)
}

/// Parses an alert expression of the supported form.
pub fn parse(s: &str) -> Result<Expr, CutoverError> {
    let toks = tokens(s)?;
    let mut p = Parser { toks, i: 0, src: s };
    let e = p.or()?;
    if p.i != p.toks.len() {
        return Err(p.unsupported());
    }
    Ok(e)
}

struct Parser<'a> {
    toks: Vec<Token>,
    i: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn unsupported(&self) -> CutoverError {
        CutoverError::Rules(format!(
            "the gate cannot evaluate {:?}: alert expressions must compare recorded series with a number, joined by and/or/unless",
            self.src.trim()
        ))
    }

    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w == k)
    }

    fn or(&mut self) -> Result<Expr, CutoverError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.i += 1;
            let right = self.and()?;
            left = Expr::Set {
                left: Box::new(left),
                op: SetOp::Or,
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, CutoverError> {
        let mut left = self.compare()?;
        loop {
            let op = if self.keyword("and") {
                SetOp::And
            } else if self.keyword("unless") {
                SetOp::Unless
            } else {
                return Ok(left);
            };
            self.i += 1;
            let right = self.compare()?;
            left = Expr::Set {
                left: Box::new(left),
                op,
                right: Box::new(right),
            };
        }
    }

    fn compare(&mut self) -> Result<Expr, CutoverError> {
        let left = self.primary()?;
        let op = match self.peek() {
            Some(Token::Op(">")) => CmpOp::Gt,
            Some(Token::Op("<")) => CmpOp::Lt,
            Some(Token::Op(">=")) => CmpOp::Ge,
            Some(Token::Op("<=")) => CmpOp::Le,
            Some(Token::Op("==")) => CmpOp::Eq,
            Some(Token::Op("!=")) => CmpOp::Ne,
            _ => return Ok(left),
        };
        self.i += 1;
        match self.next() {
            Some(Token::Num(value)) => Ok(Expr::Compare {
                left: Box::new(left),
                op,
                value,
            }),
            _ => Err(self.unsupported()),
        }
    }

    fn primary(&mut self) -> Result<Expr, CutoverError> {
        match self.next() {
            Some(Token::LParen) => {
                let e = self.or()?;
                match self.next() {
                    Some(Token::RParen) => Ok(e),
                    _ => Err(self.unsupported()),
                }
            }
            Some(Token::Ident(name)) if !matches!(name.as_str(), "and" | "or" | "unless") => {
                if matches!(self.peek(), Some(Token::LParen)) {
                    return Err(self.unsupported()); // a function call
                }
                let mut matchers = Vec::new();
                if matches!(self.peek(), Some(Token::LBrace)) {
                    self.i += 1;
                    loop {
                        match self.next() {
                            Some(Token::RBrace) => break,
                            Some(Token::Ident(label)) => {
                                let op = match self.next() {
                                    Some(Token::Op("=")) => MatchOp::Eq,
                                    Some(Token::Op("!=")) => MatchOp::Ne,
                                    Some(Token::Op("=~")) => MatchOp::Re,
                                    Some(Token::Op("!~")) => MatchOp::NotRe,
                                    _ => return Err(self.unsupported()),
                                };
                                let Some(Token::Str(value)) = self.next() else {
                                    return Err(self.unsupported());
                                };
                                matchers.push(Matcher { label, op, value });
                                if matches!(self.peek(), Some(Token::Comma)) {
                                    self.i += 1;
                                }
                            }
                            _ => return Err(self.unsupported()),
                        }
                    }
                }
                Ok(Expr::Selector { name, matchers })
            }
            _ => Err(self.unsupported()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn every_committed_alert_parses() {
        let rules =
            super::super::rules::Rules::parse(include_str!("../../../docs/prometheus/rules.yml"))
                .unwrap();
        for a in &rules.alerts {
            let e = parse(&a.expr).unwrap_or_else(|e| panic!("{}: {e}", a.name));
            for n in e.names() {
                assert!(
                    rules.recording.contains_key(&n),
                    "{} reads {n}, no recording rule",
                    a.name
                );
            }
        }
    }

    #[test]
    fn selectors_comparisons_and_or_follow_promql() {
        let e = parse(
            r#"p99{route!="/v1/sms/bulk"} > 0.1
               or
               p99{route="/v1/sms/bulk"} > 1"#,
        )
        .unwrap();
        let mut s = BTreeMap::new();
        s.insert(
            "p99".to_owned(),
            vec![
                (labels(&[("route", "/v1/sms/send")]), 0.05),
                (labels(&[("route", "/v1/sms/{id}")]), 0.2),
                (labels(&[("route", "/v1/sms/bulk")]), 0.5),
            ],
        );
        let v = e.eval(&s).unwrap();
        assert_eq!(v, vec![(labels(&[("route", "/v1/sms/{id}")]), 0.2)]);
        s.get_mut("p99").unwrap()[2].1 = 1.5;
        assert_eq!(e.eval(&s).unwrap().len(), 2);
    }

    #[test]
    fn and_needs_both_sides_and_nan_never_fires() {
        let e = parse("ratio > 0.05 and rate > 0.2").unwrap();
        let mut s = BTreeMap::new();
        s.insert("ratio".to_owned(), vec![(Labels::new(), 0.5)]);
        s.insert("rate".to_owned(), vec![(Labels::new(), 0.1)]);
        assert!(e.eval(&s).unwrap().is_empty());
        s.insert("rate".to_owned(), vec![(Labels::new(), 1.0)]);
        assert_eq!(e.eval(&s).unwrap().len(), 1);
        let nan = parse("ratio < 0.999").unwrap();
        s.insert("ratio".to_owned(), vec![(Labels::new(), f64::NAN)]);
        assert!(nan.eval(&s).unwrap().is_empty());
    }

    #[test]
    fn anything_else_is_refused_not_passed() {
        assert!(parse("rate(x[5m]) > 1").is_err());
        assert!(parse("x > y").is_err());
        assert!(parse("x + 1 > 2").is_err());
    }
}
