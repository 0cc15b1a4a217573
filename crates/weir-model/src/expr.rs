//! The trigger and window-function expression language of Beam's trigger
//! transcripts: `AfterWatermark(early=AfterCount(2), late=AfterCount(3))`,
//! `Sessions(10)`, `FixedWindows(10, 5)`.
//!
//! ```text
//! expr := NAME | NAME "(" [arg ("," arg)*] ")" | INTEGER | "[" [INTEGER ("," INTEGER)*] "]"
//! arg  := expr | NAME "=" expr
//! ```
//!
//! Integers are milliseconds. Errors point at the offending position:
//!
//! ```
//! use weir_model::expr::parse_trigger;
//! let err = parse_trigger("AfterCount(2").unwrap_err();
//! assert_eq!(err.position, 12);
//! assert!(err.to_string().contains("expected ',' or ')', found end of input"));
//! ```

use std::fmt;

use crate::time::{Duration, Timestamp};
use crate::trigger::{TimeTransform, Trigger};
use crate::window::{AnyWindowFn, FixedWindows, GlobalWindows, Sessions, SlidingWindows};

/// A parse or interpretation error, with the byte position it refers to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}\n  {input}\n  {caret}")]
pub struct ParseError {
    /// Byte offset into the input.
    pub position: usize,
    /// What went wrong.
    pub message: String,
    /// The whole input.
    pub input: String,
    caret: String,
}

impl ParseError {
    fn new(input: &str, position: usize, message: impl Into<String>) -> Self {
        ParseError {
            position,
            message: message.into(),
            input: input.to_string(),
            caret: format!("{}^", " ".repeat(input[..position.min(input.len())].chars().count())),
        }
    }
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// `Name` or `Name(args)`; `args` is `None` for a bare name.
    Call {
        /// The name.
        name: String,
        /// The arguments, if parenthesised.
        args: Option<Vec<Arg>>,
        /// Byte position of the name.
        pos: usize,
    },
    /// An integer literal.
    Int(i64, usize),
    /// A list of integers.
    List(Vec<i64>, usize),
}

impl Expr {
    /// Byte position where the expression starts.
    pub fn pos(&self) -> usize {
        match self {
            Expr::Call { pos, .. } | Expr::Int(_, pos) | Expr::List(_, pos) => *pos,
        }
    }
}

/// One argument: positional or `name=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    /// The keyword, if any.
    pub keyword: Option<String>,
    /// The value.
    pub value: Expr,
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.src, pos, msg)
    }
    fn skip_ws(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }
    fn describe_here(&self) -> String {
        match self.src[self.pos..].chars().next() {
            None => "end of input".into(),
            Some(c) => format!("'{c}'"),
        }
    }
    fn name(&mut self) -> Option<(String, usize)> {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.bytes.len()
            && (self.bytes[self.pos].is_ascii_alphanumeric() || self.bytes[self.pos] == b'_')
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| (self.src[start..self.pos].to_string(), start))
    }
    fn int(&mut self) -> Result<(i64, usize), ParseError> {
        self.skip_ws();
        let start = self.pos;
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        self.src[start..self.pos].parse::<i64>().map(|v| (v, start)).map_err(|_| self.err(start, "expected an integer"))
    }
    fn expr(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            None => Err(self.err(self.pos, "expected an expression, found end of input")),
            Some(c) if c.is_ascii_digit() || c == b'-' => {
                let (v, p) = self.int()?;
                Ok(Expr::Int(v, p))
            }
            Some(b'[') => {
                let start = self.pos;
                self.pos += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Expr::List(items, start));
                }
                loop {
                    items.push(self.int()?.0);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Expr::List(items, start));
                        }
                        _ => {
                            return Err(
                                self.err(self.pos, format!("expected ',' or ']', found {}", self.describe_here()))
                            )
                        }
                    }
                }
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let (name, pos) = self.name().expect("a name starts here");
                if self.peek() != Some(b'(') {
                    return Ok(Expr::Call { name, args: None, pos });
                }
                self.pos += 1;
                let mut args = Vec::new();
                if self.peek() == Some(b')') {
                    self.pos += 1;
                    return Ok(Expr::Call { name, args: Some(args), pos });
                }
                loop {
                    // keyword argument?
                    let save = self.pos;
                    let keyword = match self.name() {
                        Some((kw, _)) if self.peek() == Some(b'=') => {
                            self.pos += 1;
                            Some(kw)
                        }
                        _ => {
                            self.pos = save;
                            None
                        }
                    };
                    let value = self.expr()?;
                    args.push(Arg { keyword, value });
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Expr::Call { name, args: Some(args), pos });
                        }
                        _ => {
                            return Err(
                                self.err(self.pos, format!("expected ',' or ')', found {}", self.describe_here()))
                            )
                        }
                    }
                }
            }
            Some(_) => Err(self.err(self.pos, format!("unexpected {}", self.describe_here()))),
        }
    }
}

/// Parse an expression (syntax only).
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let mut p = Parser { src, bytes: src.as_bytes(), pos: 0 };
    let e = p.expr()?;
    if p.peek().is_some() {
        return Err(p.err(p.pos, format!("unexpected {} after the expression", p.describe_here())));
    }
    Ok(e)
}

/// Reads the arguments of a call against a signature.
struct Args<'a> {
    src: &'a str,
    name: &'a str,
    pos: usize,
    args: &'a [Arg],
    used: Vec<bool>,
}

impl<'a> Args<'a> {
    fn new(src: &'a str, name: &'a str, pos: usize, args: &'a Option<Vec<Arg>>) -> Self {
        let args = args.as_deref().unwrap_or(&[]);
        Args { src, name, pos, args, used: vec![false; args.len()] }
    }
    /// The `index`-th positional argument or the keyword argument `kw`.
    fn get(&mut self, index: usize, kw: &str) -> Option<&'a Expr> {
        for (i, a) in self.args.iter().enumerate() {
            if a.keyword.as_deref() == Some(kw) {
                self.used[i] = true;
                return Some(&a.value);
            }
        }
        let positional: Vec<usize> = (0..self.args.len()).filter(|&i| self.args[i].keyword.is_none()).collect();
        positional.get(index).map(|&i| {
            self.used[i] = true;
            &self.args[i].value
        })
    }
    fn int(&mut self, index: usize, kw: &str) -> Result<Option<i64>, ParseError> {
        match self.get(index, kw) {
            None => Ok(None),
            Some(Expr::Int(v, _)) => Ok(Some(*v)),
            Some(e) => {
                Err(ParseError::new(self.src, e.pos(), format!("{}: argument '{kw}' must be an integer", self.name)))
            }
        }
    }
    fn required_int(&mut self, index: usize, kw: &str) -> Result<i64, ParseError> {
        self.int(index, kw)?
            .ok_or_else(|| ParseError::new(self.src, self.pos, format!("{} needs the argument '{kw}'", self.name)))
    }
    fn rest(&mut self) -> Vec<&'a Expr> {
        let mut v = Vec::new();
        for (i, a) in self.args.iter().enumerate() {
            if !self.used[i] && a.keyword.is_none() {
                self.used[i] = true;
                v.push(&a.value);
            }
        }
        v
    }
    fn finish(self) -> Result<(), ParseError> {
        match self.used.iter().position(|u| !u) {
            None => Ok(()),
            Some(i) => Err(ParseError::new(
                self.src,
                self.args[i].value.pos(),
                format!(
                    "{} does not take {}",
                    self.name,
                    self.args[i]
                        .keyword
                        .as_ref()
                        .map_or("this argument".to_string(), |k| format!("the argument '{k}'"))
                ),
            )),
        }
    }
}

/// Interpret a parsed expression as a trigger.
pub fn trigger_from_expr(src: &str, e: &Expr) -> Result<Trigger, ParseError> {
    let Expr::Call { name, args, pos } = e else {
        return Err(ParseError::new(src, e.pos(), "expected a trigger"));
    };
    let mut a = Args::new(src, name, *pos, args);
    let sub = |e: &Expr| trigger_from_expr(src, e);
    let t = match name.as_str() {
        "Default" | "DefaultTrigger" => Trigger::Default,
        "AfterWatermark" | "AfterEndOfWindow" => {
            let early = a.get(0, "early").map(sub).transpose()?.map(Box::new);
            let late = a.get(1, "late").map(sub).transpose()?.map(Box::new);
            Trigger::AfterWatermark { early, late }
        }
        "AfterCount" | "AfterPane" => {
            let n = a.required_int(0, "count")?;
            if n < 1 {
                return Err(ParseError::new(src, *pos, "AfterCount needs a count of at least 1"));
            }
            Trigger::AfterCount(n as u64)
        }
        "AfterProcessingTime" => {
            let mut steps = Vec::new();
            if let Some(d) = a.int(0, "delay")? {
                if d < 0 {
                    return Err(ParseError::new(src, *pos, "AfterProcessingTime: the delay must not be negative"));
                }
                steps.push(TimeTransform::Delay(Duration::from_millis(d)));
            }
            if let Some(size) = a.int(1, "align")? {
                if size <= 0 {
                    return Err(ParseError::new(src, *pos, "AfterProcessingTime: the alignment must be positive"));
                }
                let offset = a.int(2, "offset")?.unwrap_or(0);
                steps.push(TimeTransform::AlignTo {
                    size: Duration::from_millis(size),
                    offset: Timestamp::from_millis(offset),
                });
            }
            Trigger::AfterProcessingTime(steps)
        }
        "AfterSynchronizedProcessingTime" => Trigger::AfterSynchronizedProcessingTime,
        "Repeatedly" => {
            let inner = a.get(0, "trigger").ok_or_else(|| ParseError::new(src, *pos, "Repeatedly needs a trigger"))?;
            Trigger::Repeatedly(Box::new(sub(inner)?))
        }
        "AfterAny" | "AfterFirst" | "AfterAll" | "AfterEach" => {
            let children = a.rest().into_iter().map(sub).collect::<Result<Vec<_>, _>>()?;
            if children.is_empty() {
                return Err(ParseError::new(src, *pos, format!("{name} needs at least one trigger")));
            }
            match name.as_str() {
                "AfterAll" => Trigger::AfterAll(children),
                "AfterEach" => Trigger::AfterEach(children),
                _ => Trigger::AfterAny(children),
            }
        }
        "OrFinally" => {
            let main = a.get(0, "main").ok_or_else(|| ParseError::new(src, *pos, "OrFinally needs two triggers"))?;
            let until = a.get(1, "until").ok_or_else(|| ParseError::new(src, *pos, "OrFinally needs two triggers"))?;
            Trigger::OrFinally(Box::new(sub(main)?), Box::new(sub(until)?))
        }
        "Never" | "_Never" => Trigger::Never,
        "Always" => Trigger::Always,
        other => return Err(ParseError::new(src, *pos, format!("unknown trigger '{other}'"))),
    };
    a.finish()?;
    Ok(t)
}

/// Parse a trigger expression.
///
/// ```
/// use weir_model::{expr::parse_trigger, Trigger};
/// assert_eq!(parse_trigger("Repeatedly(AfterCount(2))").unwrap(), Trigger::repeatedly(Trigger::after_count(2)));
/// assert!(parse_trigger("AfterCount(x=2)").is_err());
/// ```
pub fn parse_trigger(src: &str) -> Result<Trigger, ParseError> {
    trigger_from_expr(src, &parse(src)?)
}

/// Interpret a parsed expression as one of the built-in window functions.
pub fn window_fn_from_expr(src: &str, e: &Expr) -> Result<AnyWindowFn, ParseError> {
    let Expr::Call { name, args, pos } = e else {
        return Err(ParseError::new(src, e.pos(), "expected a window function"));
    };
    let mut a = Args::new(src, name, *pos, args);
    let invalid = |err: crate::ModelError| ParseError::new(src, *pos, err.to_string());
    let ms = Duration::from_millis;
    let f: AnyWindowFn = match name.as_str() {
        "GlobalWindows" => GlobalWindows.into(),
        "FixedWindows" => {
            let size = a.required_int(0, "size")?;
            let offset = a.int(1, "offset")?.unwrap_or(0);
            FixedWindows::new(ms(size), ms(offset)).map_err(invalid)?.into()
        }
        "SlidingWindows" => {
            let size = a.required_int(0, "size")?;
            let period = a.required_int(1, "period")?;
            let offset = a.int(2, "offset")?.unwrap_or(0);
            SlidingWindows::new(ms(size), ms(period), ms(offset)).map_err(invalid)?.into()
        }
        "Sessions" => {
            let gap = a.required_int(0, "gap")?;
            Sessions::with_gap(ms(gap)).map_err(invalid)?.into()
        }
        other => return Err(ParseError::new(src, *pos, format!("unknown window function '{other}'"))),
    };
    a.finish()?;
    Ok(f)
}

/// Parse a window-function expression.
///
/// ```
/// use weir_model::expr::parse_window_fn;
/// assert!(parse_window_fn("SlidingWindows(10, 5)").is_ok());
/// let err = parse_window_fn("FixedWindows(10, 10)").unwrap_err();
/// assert!(err.to_string().contains("offset must be in [0, size)"));
/// ```
pub fn parse_window_fn(src: &str) -> Result<AnyWindowFn, ParseError> {
    window_fn_from_expr(src, &parse(src)?)
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Int(v, _) => write!(f, "{v}"),
            Expr::List(vs, _) => write!(f, "{vs:?}"),
            Expr::Call { name, args: None, .. } => f.write_str(name),
            Expr::Call { name, args: Some(args), .. } => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if let Some(k) = &a.keyword {
                        write!(f, "{k}=")?;
                    }
                    write!(f, "{}", a.value)?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::WindowFn;

    #[test]
    fn parses_the_transcript_spellings() {
        assert_eq!(parse_trigger("Default").unwrap(), Trigger::Default);
        assert_eq!(
            parse_trigger("AfterWatermark(early=AfterCount(2), late=AfterCount(3))").unwrap(),
            Trigger::after_watermark()
                .with_early_firings(Trigger::after_count(2))
                .with_late_firings(Trigger::after_count(3))
        );
        assert_eq!(parse_trigger("AfterWatermark()").unwrap(), Trigger::after_watermark());
        assert_eq!(parse_trigger("_Never()").unwrap(), Trigger::Never);
        assert_eq!(parse_trigger("Always()").unwrap(), Trigger::Always);
        assert_eq!(
            parse_trigger("OrFinally(Repeatedly(AfterCount(2)), AfterCount(7))").unwrap(),
            Trigger::repeatedly(Trigger::after_count(2)).or_finally(Trigger::after_count(7))
        );
        assert_eq!(
            parse_trigger("AfterProcessingTime(delay=5, align=10, offset=3)").unwrap(),
            Trigger::after_processing_time()
                .plus_delay(Duration::from_millis(5))
                .aligned_to(Duration::from_millis(10), Timestamp::from_millis(3))
        );
        assert!(parse_window_fn("Sessions(10)").unwrap().is_merging());
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "Default",
            "AfterWatermark(early=AfterCount(2), late=AfterCount(3))",
            "AfterWatermark(late=AfterProcessingTime(delay=5))",
            "AfterEach(AfterCount(2), AfterAll(AfterCount(1), Never), AfterAny(Always, AfterSynchronizedProcessingTime))",
            "OrFinally(Repeatedly(AfterCount(2)), AfterProcessingTime(delay=5, align=10, offset=1))",
        ] {
            assert_eq!(parse_trigger(s).unwrap().to_string(), s);
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse_trigger("AfterWatermark(early=AfterCont(2))").unwrap_err();
        assert_eq!(e.position, 21);
        assert!(e.message.contains("unknown trigger 'AfterCont'"));
        let e = parse_trigger("AfterCount(2) x").unwrap_err();
        assert_eq!(e.position, 14);
        let e = parse_trigger("AfterCount(2, 3)").unwrap_err();
        assert_eq!(e.position, 14);
        assert!(e.message.contains("does not take"));
        let e = parse_window_fn("FixedWindows(size=0)").unwrap_err();
        assert!(e.message.contains("size must be positive"), "{e}");
        let e = parse_window_fn("Sessions").unwrap_err();
        assert!(e.message.contains("needs the argument 'gap'"), "{e}");
        let e = parse("[1, x]").unwrap_err();
        assert_eq!(e.position, 4);
        let e = parse_trigger("AfterCount(0)").unwrap_err();
        assert!(e.message.contains("at least 1"));
        let shown = parse_trigger("Foo(1)").unwrap_err().to_string();
        assert!(shown.ends_with("Foo(1)\n  ^"), "{shown}");
    }
}
