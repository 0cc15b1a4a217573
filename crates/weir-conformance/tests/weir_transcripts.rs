//! Weir's own transcripts (`tests/data/weir_transcripts.yaml`), one test per
//! document, with `state` checks enabled.

use libtest_mimic::{Arguments, Failed, Trial};
use weir_conformance::{judge, load, RunOptions};

fn main() {
    let args = Arguments::from_args();
    let text = include_str!("data/weir_transcripts.yaml");
    let trials = load(text)
        .expect("valid YAML")
        .into_iter()
        .map(|(name, doc)| {
            Trial::test(name, move || match doc {
                Ok(t) => judge(&t, RunOptions { check_state: true }).map_err(Failed::from),
                Err(e) => Err(Failed::from(e.to_string())),
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
