//! Beam's trigger transcripts (`shared/conformance/beam_trigger_transcripts.yaml`,
//! read unchanged), one test per document, under the trigger-driver contract.
//! The 13 positive cases must pass; the 5 `error` cases pass only by failing
//! with the expected kind of error. `state` actions are not checked, as
//! upstream (their intended meaning is an unchecked TODO there).

use libtest_mimic::{Arguments, Failed, Trial};
use weir_conformance::{judge, load, shared_path, RunOptions};

fn main() {
    let args = Arguments::from_args();
    let path = shared_path("conformance/beam_trigger_transcripts.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} (set WEIR_SHARED to the shared/ folder): {e}", path.display()));
    let docs = load(&text).expect("the transcript file is valid YAML");
    assert_eq!(docs.len(), 18, "the upstream file has 18 documents");
    let trials = docs
        .into_iter()
        .map(|(name, doc)| {
            Trial::test(name, move || match doc {
                Ok(t) => judge(&t, RunOptions { check_state: false }).map_err(Failed::from),
                Err(e) => Err(Failed::from(e.to_string())),
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
