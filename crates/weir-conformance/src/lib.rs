//! # weir-conformance
//!
//! Runs Beam's trigger transcripts against Weir's semantic core, under the
//! trigger-driver contract of `shared/conformance/README.md` §3–6, and the
//! extensions Weir adds to the format (§10 there):
//!
//! | Extension | Meaning |
//! | --- | --- |
//! | `clock: T` (action) | set processing time to `T`, firing processing-time timers whose target is strictly before `T` |
//! | `watermark: inf` / `end_of_input: true` (action) | move the watermark to +infinity: every window fires and is garbage collected |
//! | `input: {key: K, values: [...]}` | a bundle for key `K` (the plain list form uses key `k`) |
//! | `key: K` in an expected record | match only outputs of key `K` |
//! | `retraction: true/false` in an expected record | match retractions (accumulating-and-retracting mode) |
//! | `dropped: true` in an expected record | match an element routed to the late-data output |
//! | `state:` (action) | checked when [`RunOptions::check_state`] is set: `present` (open window with state), `absent` (nothing stored), `tombstone` (only the finished marker); optional `key` |
//! | `bundling:` (document) | `all` or a list of `original`, `reversed`, `shuffled`, `one_per_bundle`, `one_per_bundle_reversed`, `two_per_bundle`: the transcript runs once per variant, each re-cutting every `input` list, and every run must pass |
//! | `accumulation_mode: accumulating_and_retracting` | Weir's third mode |
//! | `closing: fire_always`, `on_time: fire_if_non_empty`, `late_data_output: true` (document) | the strategy's other knobs |
//!
//! Numbers are milliseconds. Windows print as `[start, max_timestamp]`; the
//! global window as `global`.

use std::fmt;

use serde_yaml::Value;
use weir_model::expr::{self, Expr};
use weir_model::{
    AccumulationMode, AnyWindowFn, Buffer, ClosingBehavior, Duration, FixedWindows, GroupAlsoByWindow, GroupOutput,
    OnTimeBehavior, Timestamp, TimestampCombiner, Timing, Trigger, Window, WindowFn, WindowStatus, WindowingStrategy,
};

/// The test-only window function of the transcripts:
/// `FixedWindows(size)` whose transformed output time is `t + 100`.
#[derive(Debug)]
pub struct CustomTimestampingFixedWindows(pub FixedWindows);

impl WindowFn for CustomTimestampingFixedWindows {
    fn assign_windows(&self, timestamp: Timestamp, out: &mut Vec<Window>) {
        self.0.assign_windows(timestamp, out)
    }
    fn transformed_output_time(&self, _window: &Window, timestamp: Timestamp) -> Timestamp {
        timestamp + Duration::from_millis(100)
    }
}

/// Why a transcript failed (or could not be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HarnessError {
    /// An expected record matched no pending output.
    #[error("Unmatched output: expected {expected} among {pending}")]
    Unmatched {
        /// The expected record.
        expected: String,
        /// What was pending.
        pending: String,
    },
    /// Outputs were produced that no `expect` accounted for.
    #[error("Unexpected output {outputs} before {before}")]
    Unexpected {
        /// The outputs.
        outputs: String,
        /// The action they were left pending before, or "end".
        before: String,
    },
    /// The `state` check failed.
    #[error("State mismatch: window {window} of key {key} is {actual:?}, expected {expected}")]
    State {
        /// The key.
        key: String,
        /// The window.
        window: String,
        /// What the engine holds.
        actual: WindowStatus,
        /// What the transcript says.
        expected: &'static str,
    },
    /// An action name the harness does not know.
    #[error("Unknown action: {0}")]
    UnknownAction(String),
    /// The document is malformed or names something invalid.
    #[error("Invalid transcript {name}: {reason}")]
    Invalid {
        /// Document name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The YAML could not be read.
    #[error("YAML error: {0}")]
    Yaml(String),
}

/// How one transcript is re-bundled (the upstream TestStream variants).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Bundling {
    /// Each `input` list is one bundle, as written.
    Original,
    /// One bundle, reversed.
    Reversed,
    /// One bundle, shuffled with a fixed seed.
    Shuffled,
    /// One element per bundle.
    OnePerBundle,
    /// One element per bundle, reversed.
    OnePerBundleReversed,
    /// Two elements per bundle.
    TwoPerBundle,
}

impl Bundling {
    const ALL: [Bundling; 6] = [
        Bundling::Original,
        Bundling::Reversed,
        Bundling::Shuffled,
        Bundling::OnePerBundle,
        Bundling::OnePerBundleReversed,
        Bundling::TwoPerBundle,
    ];

    fn parse(s: &str) -> Option<Bundling> {
        Some(match s {
            "original" => Bundling::Original,
            "reversed" => Bundling::Reversed,
            "shuffled" => Bundling::Shuffled,
            "one_per_bundle" => Bundling::OnePerBundle,
            "one_per_bundle_reversed" => Bundling::OnePerBundleReversed,
            "two_per_bundle" => Bundling::TwoPerBundle,
            _ => return None,
        })
    }

    /// Cut one `input` list into bundles.
    pub fn bundles(self, values: &[i64]) -> Vec<Vec<i64>> {
        let mut v = values.to_vec();
        match self {
            Bundling::Original => vec![v],
            Bundling::Reversed => {
                v.reverse();
                vec![v]
            }
            Bundling::Shuffled => {
                // A small deterministic Fisher-Yates (xorshift), so runs are reproducible.
                let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ v.len() as u64;
                for i in (1..v.len()).rev() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    v.swap(i, (state % (i as u64 + 1)) as usize);
                }
                vec![v]
            }
            Bundling::OnePerBundle => v.into_iter().map(|x| vec![x]).collect(),
            Bundling::OnePerBundleReversed => v.into_iter().rev().map(|x| vec![x]).collect(),
            Bundling::TwoPerBundle => v.chunks(2).map(<[i64]>::to_vec).collect(),
        }
    }
}

/// An expected output record: every field is optional ("partial match").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Key.
    pub key: Option<String>,
    /// `[start, max_timestamp]`, or `None` inside for the global window.
    pub window: Option<Option<(i64, i64)>>,
    /// Sorted values.
    pub values: Option<Vec<i64>>,
    /// Output timestamp.
    pub timestamp: Option<i64>,
    /// Pane index.
    pub index: Option<i64>,
    /// Non-speculative index.
    pub nonspeculative_index: Option<i64>,
    /// Early timing.
    pub early: Option<bool>,
    /// Late timing.
    pub late: Option<bool>,
    /// Last pane.
    pub final_: Option<bool>,
    /// A retraction.
    pub retraction: Option<bool>,
    /// A dropped element.
    pub dropped: Option<bool>,
}

/// An actual output record, with every field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actual {
    /// Key.
    pub key: String,
    /// `[start, max_timestamp]`, or `None` for the global window.
    pub window: Option<(i64, i64)>,
    /// Sorted values.
    pub values: Vec<i64>,
    /// Output timestamp.
    pub timestamp: i64,
    /// Pane index.
    pub index: i64,
    /// Non-speculative index.
    pub nonspeculative_index: i64,
    /// Early timing.
    pub early: bool,
    /// Late timing.
    pub late: bool,
    /// Last pane.
    pub final_: bool,
    /// A retraction.
    pub retraction: bool,
    /// A dropped element.
    pub dropped: bool,
}

impl Expected {
    fn matches(&self, a: &Actual) -> bool {
        fn eq<T: PartialEq>(e: &Option<T>, a: &T) -> bool {
            e.as_ref().is_none_or(|e| e == a)
        }
        eq(&self.key, &a.key)
            && eq(&self.window, &a.window)
            && eq(&self.values, &a.values)
            && eq(&self.timestamp, &a.timestamp)
            && eq(&self.index, &a.index)
            && eq(&self.nonspeculative_index, &a.nonspeculative_index)
            && eq(&self.early, &a.early)
            && eq(&self.late, &a.late)
            && eq(&self.final_, &a.final_)
            && eq(&self.retraction, &a.retraction)
            && eq(&self.dropped, &a.dropped)
    }
}

fn fmt_window(w: &Option<(i64, i64)>) -> String {
    match w {
        None => "global".into(),
        Some((s, e)) => format!("[{s}, {e}]"),
    }
}

impl fmt::Display for Actual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{key: {}, window: {}, values: {:?}, timestamp: {}, index: {}, nonspeculative_index: {}, early: {}, late: {}, final: {}",
            self.key,
            fmt_window(&self.window),
            self.values,
            self.timestamp,
            self.index,
            self.nonspeculative_index,
            self.early,
            self.late,
            self.final_
        )?;
        if self.retraction {
            f.write_str(", retraction: true")?;
        }
        if self.dropped {
            f.write_str(", dropped: true")?;
        }
        f.write_str("}")
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(k) = &self.key {
            parts.push(format!("key: {k}"));
        }
        if let Some(w) = &self.window {
            parts.push(format!("window: {}", fmt_window(w)));
        }
        if let Some(v) = &self.values {
            parts.push(format!("values: {v:?}"));
        }
        for (name, v) in
            [("timestamp", self.timestamp), ("index", self.index), ("nonspeculative_index", self.nonspeculative_index)]
        {
            if let Some(v) = v {
                parts.push(format!("{name}: {v}"));
            }
        }
        for (name, v) in [
            ("early", self.early),
            ("late", self.late),
            ("final", self.final_),
            ("retraction", self.retraction),
            ("dropped", self.dropped),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name}: {v}"));
            }
        }
        write!(f, "{{{}}}", parts.join(", "))
    }
}

/// Expected state of windows (`state` action).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateCheck {
    /// Key (default `k`).
    pub key: String,
    /// Windows that must hold open state.
    pub present: Vec<Option<(i64, i64)>>,
    /// Windows with nothing stored.
    pub absent: Vec<Option<(i64, i64)>>,
    /// Windows that keep only the finished marker.
    pub tombstone: Vec<Option<(i64, i64)>>,
}

/// One transcript action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A bundle of elements for a key (value = timestamp).
    Input {
        /// The key.
        key: String,
        /// The values.
        values: Vec<i64>,
    },
    /// Advance the watermark (`Timestamp::MAX` for end of input).
    Watermark(Timestamp),
    /// Advance processing time.
    Clock(Timestamp),
    /// Expected outputs.
    Expect(Vec<Expected>),
    /// Expected window state.
    State(StateCheck),
}

impl Action {
    fn describe(&self) -> String {
        match self {
            Action::Input { key, values } => format!("input {key}: {values:?}"),
            Action::Watermark(t) => format!("watermark {t}"),
            Action::Clock(t) => format!("clock {t}"),
            Action::Expect(_) => "expect".into(),
            Action::State(_) => "state".into(),
        }
    }
}

/// One transcript document.
#[derive(Clone, Debug)]
pub struct Transcript {
    /// Name (duplicates get `_1`, `_2`, … as upstream).
    pub name: String,
    /// The windowing strategy it runs.
    pub strategy: WindowingStrategy,
    /// The actions.
    pub actions: Vec<Action>,
    /// For negative cases: the regex the failure must match.
    pub error: Option<String>,
    /// The bundling variants to run.
    pub bundling: Vec<Bundling>,
}

/// Options of a run.
#[derive(Copy, Clone, Debug, Default)]
pub struct RunOptions {
    /// Check `state` actions (upstream ignores them).
    pub check_state: bool,
}

fn invalid(name: &str, reason: impl Into<String>) -> HarnessError {
    HarnessError::Invalid { name: name.to_string(), reason: reason.into() }
}

fn as_int(name: &str, v: &Value, what: &str) -> Result<i64, HarnessError> {
    v.as_i64().ok_or_else(|| invalid(name, format!("{what} must be an integer, got {v:?}")))
}

fn as_ints(name: &str, v: &Value, what: &str) -> Result<Vec<i64>, HarnessError> {
    v.as_sequence()
        .ok_or_else(|| invalid(name, format!("{what} must be a list of integers, got {v:?}")))?
        .iter()
        .map(|x| as_int(name, x, what))
        .collect()
}

fn as_window(name: &str, v: &Value) -> Result<Option<(i64, i64)>, HarnessError> {
    if v.as_str() == Some("global") {
        return Ok(None);
    }
    match as_ints(name, v, "window")?.as_slice() {
        [s, e] => Ok(Some((*s, *e))),
        _ => Err(invalid(name, "a window is [start, max_timestamp] or global")),
    }
}

fn as_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

fn as_time(name: &str, v: &Value) -> Result<Timestamp, HarnessError> {
    match v.as_str() {
        Some("inf" | "+inf") => Ok(Timestamp::MAX),
        Some("-inf") => Ok(Timestamp::MIN),
        _ => Ok(Timestamp::from_millis(as_int(name, v, "time")?)),
    }
}

fn parse_expected(name: &str, v: &Value) -> Result<Expected, HarnessError> {
    let m = v.as_mapping().ok_or_else(|| invalid(name, "an expected record must be a mapping"))?;
    let mut e = Expected::default();
    let flag =
        |x: &Value, what: &str| x.as_bool().ok_or_else(|| invalid(name, format!("{what} must be true or false")));
    for (k, x) in m {
        match k.as_str().unwrap_or_default() {
            "key" => e.key = Some(as_key(x)),
            "window" => e.window = Some(as_window(name, x)?),
            "values" => {
                let mut vs = as_ints(name, x, "values")?;
                vs.sort();
                e.values = Some(vs)
            }
            "timestamp" => e.timestamp = Some(as_int(name, x, "timestamp")?),
            "index" => e.index = Some(as_int(name, x, "index")?),
            "nonspeculative_index" => e.nonspeculative_index = Some(as_int(name, x, "nonspeculative_index")?),
            "early" => e.early = Some(flag(x, "early")?),
            "late" => e.late = Some(flag(x, "late")?),
            "final" => e.final_ = Some(flag(x, "final")?),
            "retraction" => e.retraction = Some(flag(x, "retraction")?),
            "dropped" => e.dropped = Some(flag(x, "dropped")?),
            other => return Err(invalid(name, format!("unknown field '{other}' in an expected record"))),
        }
    }
    Ok(e)
}

fn parse_window_fn(name: &str, src: &str) -> Result<AnyWindowFn, HarnessError> {
    let e = expr::parse(src).map_err(|e| invalid(name, e.to_string()))?;
    if let Expr::Call { name: n, args, .. } = &e {
        if n == "CustomTimestampingFixedWindowsWindowFn" {
            let size = match args.as_deref() {
                Some([a]) => match a.value {
                    Expr::Int(v, _) => v,
                    _ => return Err(invalid(name, "CustomTimestampingFixedWindowsWindowFn(size)")),
                },
                _ => return Err(invalid(name, "CustomTimestampingFixedWindowsWindowFn(size)")),
            };
            let f = FixedWindows::of(Duration::from_millis(size)).map_err(|e| invalid(name, e.to_string()))?;
            return Ok(AnyWindowFn::custom(CustomTimestampingFixedWindows(f)));
        }
    }
    expr::window_fn_from_expr(src, &e).map_err(|e| invalid(name, e.to_string()))
}

fn parse_doc(doc: &Value, seen: &mut Vec<String>) -> Result<Transcript, HarnessError> {
    let get = |k: &str| doc.get(k);
    let base = get("name").and_then(Value::as_str).unwrap_or("unnamed").to_string();
    let dupes = seen.iter().filter(|n| **n == base).count();
    seen.push(base.clone());
    let name = if dupes == 0 { base } else { format!("{base}_{dupes}") };
    let n = name.as_str();
    let text = |k: &str, default: &str| -> String { get(k).and_then(Value::as_str).unwrap_or(default).to_string() };
    let window_fn = parse_window_fn(n, &text("window_fn", "GlobalWindows"))?;
    let trigger: Trigger =
        expr::parse_trigger(&text("trigger_fn", "Default")).map_err(|e| invalid(n, e.to_string()))?;
    let mode = match text("accumulation_mode", "accumulating").to_ascii_lowercase().as_str() {
        "accumulating" => AccumulationMode::Accumulating,
        "discarding" => AccumulationMode::Discarding,
        "accumulating_and_retracting" => AccumulationMode::AccumulatingAndRetracting,
        other => return Err(invalid(n, format!("unknown accumulation_mode '{other}'"))),
    };
    let combiner = match text("timestamp_combiner", "OUTPUT_AT_EOW").to_ascii_uppercase().as_str() {
        "OUTPUT_AT_EOW" => TimestampCombiner::EndOfWindow,
        "OUTPUT_AT_EARLIEST" => TimestampCombiner::Earliest,
        "OUTPUT_AT_LATEST" => TimestampCombiner::Latest,
        "OUTPUT_AT_EARLIEST_TRANSFORMED" => TimestampCombiner::EarliestTransformed,
        other => return Err(invalid(n, format!("unknown timestamp_combiner '{other}'"))),
    };
    let lateness = get("allowed_lateness").map(|v| as_int(n, v, "allowed_lateness")).transpose()?.unwrap_or(0);
    let closing = match text("closing", "fire_if_non_empty").as_str() {
        "fire_if_non_empty" => ClosingBehavior::FireIfNonEmpty,
        "fire_always" => ClosingBehavior::FireAlways,
        other => return Err(invalid(n, format!("unknown closing '{other}'"))),
    };
    let on_time = match text("on_time", "fire_always").as_str() {
        "fire_always" => OnTimeBehavior::FireAlways,
        "fire_if_non_empty" => OnTimeBehavior::FireIfNonEmpty,
        other => return Err(invalid(n, format!("unknown on_time '{other}'"))),
    };
    let strategy = WindowingStrategy::new(window_fn)
        .trigger(trigger)
        .accumulation(mode)
        .timestamp_combiner(combiner)
        .allowed_lateness(Duration::from_millis(lateness))
        .closing(closing)
        .on_time(on_time)
        .late_data_output(get("late_data_output").and_then(Value::as_bool).unwrap_or(false))
        // The upstream harness enables "unsafe" triggers; so do we.
        .allow_data_loss(true);

    let bundling = match get("bundling") {
        None => vec![Bundling::Original],
        Some(Value::String(s)) if s == "all" => Bundling::ALL.to_vec(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| i.as_str().and_then(Bundling::parse).ok_or_else(|| invalid(n, format!("unknown bundling {i:?}"))))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(invalid(n, format!("bundling must be 'all' or a list, got {other:?}"))),
    };

    let items = get("transcript")
        .and_then(Value::as_sequence)
        .ok_or_else(|| invalid(n, "a transcript is required (a list of actions)"))?;
    let mut actions = Vec::new();
    for item in items {
        let m = item
            .as_mapping()
            .filter(|m| m.len() == 1)
            .ok_or_else(|| invalid(n, "each action must have exactly one key"))?;
        let (k, v) = m.iter().next().expect("one entry");
        let action = match k.as_str().unwrap_or_default() {
            "input" => match v {
                Value::Mapping(_) => Action::Input {
                    key: v.get("key").map(as_key).unwrap_or_else(|| "k".into()),
                    values: as_ints(n, v.get("values").unwrap_or(&Value::Null), "input values")?,
                },
                _ => Action::Input { key: "k".into(), values: as_ints(n, v, "input")? },
            },
            "watermark" => Action::Watermark(as_time(n, v)?),
            "end_of_input" => Action::Watermark(Timestamp::MAX),
            "clock" => Action::Clock(as_time(n, v)?),
            "expect" => Action::Expect(
                v.as_sequence()
                    .ok_or_else(|| invalid(n, "expect takes a list"))?
                    .iter()
                    .map(|e| parse_expected(n, e))
                    .collect::<Result<_, _>>()?,
            ),
            "state" => {
                let windows = |k: &str| -> Result<Vec<Option<(i64, i64)>>, HarnessError> {
                    match v.get(k) {
                        None => Ok(Vec::new()),
                        Some(list) => list
                            .as_sequence()
                            .ok_or_else(|| invalid(n, "state lists windows"))?
                            .iter()
                            .map(|w| as_window(n, w))
                            .collect(),
                    }
                };
                Action::State(StateCheck {
                    key: v.get("key").map(as_key).unwrap_or_else(|| "k".into()),
                    present: windows("present")?,
                    absent: windows("absent")?,
                    tombstone: windows("tombstone")?,
                })
            }
            other => return Err(HarnessError::UnknownAction(other.to_string())),
        };
        actions.push(action);
    }
    Ok(Transcript {
        name,
        strategy,
        actions,
        error: get("error").and_then(Value::as_str).map(str::to_string),
        bundling,
    })
}

/// One document of a transcript file: its name and the transcript, or why it
/// could not be read.
pub type LoadedDocument = (String, Result<Transcript, HarnessError>);

/// Read every document of a multi-document YAML transcript file. A document
/// that cannot be interpreted is returned as an `Err` in its slot, so a
/// harness can still report it as its own failing test.
///
/// The upstream file is written for PyYAML, which accepts a flow-mapping key
/// directly followed by `:[` (`{values:[1, 2]}`); libyaml does not. Before
/// parsing, `name:[` is therefore read as `name: [` — the only leniency
/// applied, and the file itself is never changed.
pub fn load(yaml: &str) -> Result<Vec<LoadedDocument>, HarnessError> {
    use serde::Deserialize;
    let pyyaml_compatible = regex_lite::Regex::new(r"([A-Za-z_]):\[").expect("valid regex").replace_all(yaml, "$1: [");
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(&pyyaml_compatible).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| HarnessError::Yaml(e.to_string()))?;
        if v.is_null() {
            continue;
        }
        let label = v.get("name").and_then(Value::as_str).map_or_else(|| format!("document_{i}"), str::to_string);
        let parsed = parse_doc(&v, &mut seen);
        let label = parsed.as_ref().map_or(label, |t| t.name.clone());
        out.push((label, parsed));
    }
    Ok(out)
}

fn to_window(w: &Window) -> Option<(i64, i64)> {
    w.as_interval().map(|iv| (iv.start.millis(), iv.max_timestamp().millis()))
}

fn to_engine_window(w: &Option<(i64, i64)>) -> Window {
    match w {
        None => Window::Global,
        Some((s, m)) => Window::interval(*s, m + 1),
    }
}

fn list(records: &[Actual]) -> String {
    let items: Vec<String> = records.iter().map(ToString::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// Run a transcript under every bundling variant it asks for.
pub fn run(t: &Transcript, opts: RunOptions) -> Result<(), HarnessError> {
    for &b in &t.bundling {
        run_variant(t, b, opts).map_err(|e| {
            if t.bundling.len() > 1 {
                match e {
                    HarnessError::Unmatched { expected, pending } => {
                        HarnessError::Unmatched { expected, pending: format!("{pending} (bundling {b:?})") }
                    }
                    HarnessError::Unexpected { outputs, before } => {
                        HarnessError::Unexpected { outputs, before: format!("{before} (bundling {b:?})") }
                    }
                    other => other,
                }
            } else {
                e
            }
        })?;
    }
    Ok(())
}

/// Run a transcript with one bundling variant.
pub fn run_variant(t: &Transcript, bundling: Bundling, opts: RunOptions) -> Result<(), HarnessError> {
    let mut gbw: GroupAlsoByWindow<String, i64, Buffer> =
        GroupAlsoByWindow::new(t.strategy.clone(), Buffer).map_err(|e| invalid(&t.name, e.to_string()))?;
    let mut pending: Vec<Actual> = Vec::new();
    let mut out = Vec::new();
    for action in &t.actions {
        if !matches!(action, Action::Expect(_)) && !pending.is_empty() {
            return Err(HarnessError::Unexpected { outputs: list(&pending), before: action.describe() });
        }
        match action {
            Action::Input { key, values } => {
                for bundle in bundling.bundles(values) {
                    let elements = bundle.into_iter().map(|v| (v, Timestamp::from_millis(v)));
                    gbw.process_bundle(key, elements, &mut out);
                }
            }
            Action::Watermark(w) => gbw.advance_input_watermark(*w, &mut out),
            Action::Clock(now) => gbw.advance_processing_time(*now, &mut out),
            Action::Expect(expected) => {
                for e in expected {
                    match pending.iter().position(|a| e.matches(a)) {
                        Some(i) => {
                            pending.remove(i);
                        }
                        None => {
                            return Err(HarnessError::Unmatched { expected: e.to_string(), pending: list(&pending) })
                        }
                    }
                }
            }
            Action::State(check) => {
                if opts.check_state {
                    for (windows, expected, want) in [
                        (&check.present, "present", WindowStatus::Present),
                        (&check.absent, "absent", WindowStatus::Absent),
                        (&check.tombstone, "tombstone", WindowStatus::Tombstone),
                    ] {
                        for w in windows {
                            let actual = gbw.window_status(&check.key, &to_engine_window(w));
                            if actual != want {
                                return Err(HarnessError::State {
                                    key: check.key.clone(),
                                    window: fmt_window(w),
                                    actual,
                                    expected,
                                });
                            }
                        }
                    }
                }
            }
        }
        for o in out.drain(..) {
            pending.push(match o {
                GroupOutput::Pane(p) => {
                    let mut values = p.value;
                    values.sort();
                    Actual {
                        key: p.key,
                        window: to_window(&p.window),
                        values,
                        timestamp: p.timestamp.millis(),
                        index: p.pane.index,
                        nonspeculative_index: p.pane.nonspeculative_index,
                        early: p.pane.timing == Timing::Early,
                        late: p.pane.timing == Timing::Late,
                        final_: p.pane.is_last,
                        retraction: p.retraction,
                        dropped: false,
                    }
                }
                GroupOutput::Dropped(d) => Actual {
                    key: d.key,
                    window: to_window(&d.window),
                    values: vec![d.value],
                    timestamp: d.timestamp.millis(),
                    index: 0,
                    nonspeculative_index: 0,
                    early: false,
                    late: true,
                    final_: false,
                    retraction: false,
                    dropped: true,
                },
            });
        }
    }
    if !pending.is_empty() {
        return Err(HarnessError::Unexpected { outputs: list(&pending), before: "end".into() });
    }
    Ok(())
}

/// Judge a transcript: positive cases must run cleanly; a case with an
/// `error` passes only if it fails with a message matching that regex.
pub fn judge(t: &Transcript, opts: RunOptions) -> Result<(), String> {
    let result = run(t, opts);
    match (&t.error, result) {
        (None, Ok(())) => Ok(()),
        (None, Err(e)) => Err(e.to_string()),
        (Some(re), Ok(())) => Err(format!("expected a failure matching /{re}/, but the transcript passed")),
        (Some(re), Err(e)) => {
            let regex = regex_lite::Regex::new(re).map_err(|err| format!("bad error regex /{re}/: {err}"))?;
            let msg = e.to_string();
            if regex.is_match(&msg) {
                Ok(())
            } else {
                Err(format!("expected a failure matching /{re}/, got: {msg}"))
            }
        }
    }
}

/// Find `shared/<rel>`: `$WEIR_SHARED/<rel>` if set, else the first
/// `shared/<rel>` in the current directory or one of its ancestors.
pub fn shared_path(rel: &str) -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("WEIR_SHARED") {
        return std::path::Path::new(&dir).join(rel);
    }
    let start = std::env::current_dir().expect("current directory");
    for dir in start.ancestors() {
        let p = dir.join("shared").join(rel);
        if p.exists() {
            return p;
        }
    }
    std::path::Path::new("../shared").join(rel)
}
